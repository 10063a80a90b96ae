{
  "targets": [
    {
      "target_name": "tls_certificate_guard",
      "sources": ["native/tls-certificate-guard.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "ed25519_key_decode",
      "sources": ["native/ed25519-key-decode.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "memory_trim",
      "sources": ["native/memory-trim.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "peer_hung_up",
      "sources": ["native/peer-hung-up.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "reuseport_listen",
      "sources": ["native/reuseport-listen.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
