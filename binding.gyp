{
  "targets": [
    {
      "target_name": "tls_certificate_guard",
      "sources": ["native/tls-certificate-guard.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
