{
  "targets": [
    {
      "target_name": "tcmu_rbd",
      "sources": ["src/native/rbd.cc"],
      # node-addon-api's headers and C++-exceptions settings without depending on its .gyp
      # (the reason is in @tcmu/ring's binding.gyp); librbd and librados from librbd-dev.
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "libraries": ["-lrbd", "-lrados"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"]
    }
  ]
}
