// The file names of the development PKI (lib/certs.ts creates it, bmctl and
// bmaas-server's banner name its files). A file of its own so that naming the
// files does not load the certificate machinery: @peculiar/x509 with its
// tsyringe and reflect-metadata costs bmctl ~200 ms a command.

/** The files of a development PKI, by role. */
export const DEV_CERT_FILES = {
  caCert: "ca.pem",
  caKey: "ca-key.pem",
  serverCert: "server.pem",
  serverKey: "server-key.pem",
  operatorCert: "operator.pem",
  operatorKey: "operator-key.pem",
} as const;
