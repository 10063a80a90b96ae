import * as grpc from "@grpc/grpc-js";
import { OperatorService } from "../../gen/bmaas/operator/v1/operator_pb.js";
import { createClient, type ServiceClient } from "../../lib/grpc-adapter.js";
import type { TlsMaterial } from "../private/diagnose.js";

// The operator client: grpc-js and the generated service. Loaded on a
// command's first call (context.ts), so that --help and refused arguments
// never load grpc-js or the protobuf descriptors.

export type Operator = ServiceClient<(typeof OperatorService)["method"]>;

/** An operator client for server over mTLS with tls. */
export function operatorClient(server: string, tls: TlsMaterial): Operator {
  return createClient(OperatorService, server, grpc.credentials.createSsl(tls.ca, tls.key, tls.cert));
}
