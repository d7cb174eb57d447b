{
  "targets": [
    {
      "target_name": "tritpack_native",
      "sources": ["native/tp_addon.c", "native/tp_pool.c", "native/tp_ternary.c", "native/tp_repack.c", "native/tp_int8.c", "native/tp_float.c", "native/tp_attention.c", "native/tp_elementwise.c", "native/tp_map.c"],
      "cflags_c": ["-std=gnu11", "-O3", "-ffp-contract=off", "-pthread"],
      "ldflags": ["-pthread"],
      "xcode_settings": { "OTHER_CFLAGS": ["-std=gnu11", "-O3", "-ffp-contract=off"] }
    }
  ]
}
