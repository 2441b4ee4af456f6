{
  "targets": [
    {
      "target_name": "rift",
      "sources": [
        "native/core/loss_plan.cc",
        "native/core/safetensors.cc",
        "native/core/safetensors_writer.cc",
        "native/cpu/loss_rows.cc",
        "native/cpu/thread_pool.cc",
        "native/cpu/bench_ops.cc",
        "native/cpu/blas_loader.cc",
        "native/cpu/cpu_ops.cc",
        "native/cpu/ops_attention.cc",
        "native/cpu/ops_gemm.cc",
        "native/cpu/ops_misc.cc",
        "native/cpu/ops_norm_rope.cc",
        "native/napi/addon.cc",
        "native/napi/loss.cc",
        "native/napi/device.cc",
        "native/napi/bench.cc",
        "native/napi/ops.cc",
        "native/napi/safetensors.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-fopenmp-simd", "-march=native", "-fexceptions"],
      "conditions": [["target_arch=='x64'", { "cflags_cc": ["-mprefer-vector-width=512"] }]],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O3", "-fno-math-errno"]
      },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1 } }
    }
  ]
}
