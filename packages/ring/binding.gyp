{
  "targets": [
    {
      "target_name": "tcmu_ring",
      "sources": ["src/native/addon.cc", "src/native/mapping.cc", "src/native/ring_engine.cc"],
      # node-addon-api's headers and its C++-exceptions settings (what its node_addon_api_except
      # target gives), without depending on its .gyp file: gyp writes a Makefile for every .gyp it
      # depends on at the same path relative to build/, which lands outside this package
      # (a stray node_modules/@tcmu/node-addon-api/ beside it in a consumer's tree).
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"]
    }
  ]
}
