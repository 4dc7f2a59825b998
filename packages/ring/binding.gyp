{
  "targets": [
    {
      "target_name": "tcmu_ring",
      "sources": ["src/native/addon.cc", "src/native/mapping.cc", "src/native/ring_engine.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
