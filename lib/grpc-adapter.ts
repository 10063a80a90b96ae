import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";

// One small adapter between protobuf-es v2 service descriptors and grpc-js,
// instead of hand-written definitions per method: the path is
// /<package>.<Service>/<Method> and (de)serialisation is toBinary/fromBinary.

// A request that does not decode (malformed protobuf, invalid UTF-8) must be
// the caller's INVALID_ARGUMENT, but grpc-js answers INTERNAL when a
// deserializer throws. So the deserializer returns this marker instead, and
// implement() answers it before the handler runs.
const MALFORMED = Symbol("malformed request");
type Malformed = { [MALFORMED]: string };

function isMalformed(m: unknown): m is Malformed {
  return typeof m === "object" && m !== null && MALFORMED in m;
}

function methodDefinition(service: { typeName: string }, method: DescMethod): grpc.MethodDefinition<unknown, unknown> {
  return {
    path: `/${service.typeName}/${method.name}`,
    requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
    responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
    requestSerialize: (m: unknown) => Buffer.from(toBinary(method.input, m as MessageShape<DescMessage>)),
    requestDeserialize: (b: Buffer): unknown => {
      try {
        return fromBinary(method.input, b, { readUnknownFields: false });
      } catch (e) {
        return { [MALFORMED]: e instanceof Error ? e.message : String(e) } satisfies Malformed;
      }
    },
    responseSerialize: (m: unknown) => Buffer.from(toBinary(method.output, m as MessageShape<DescMessage>)),
    responseDeserialize: (b: Buffer) => fromBinary(method.output, b),
    originalName: method.localName,
  };
}

/** The grpc-js service definition of a protobuf-es service descriptor. */
export function serviceDefinition(service: GenService<GenServiceMethods>): grpc.ServiceDefinition {
  return Object.fromEntries(service.methods.map((m) => [m.localName, methodDefinition(service, m)]));
}

type Unary<S extends GenServiceMethods> = {
  [K in keyof S as S[K]["methodKind"] extends "unary" ? K : never]: S[K];
};
type ServerStreaming<S extends GenServiceMethods> = {
  [K in keyof S as S[K]["methodKind"] extends "server_streaming" ? K : never]: S[K];
};

/** A unary handler: resolves with the response or throws (see ./rpc-error.ts). */
export type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  call: grpc.ServerUnaryCall<MessageShape<I>, MessageShape<O>>,
) => Promise<MessageInitShape<O>>;

/** A server-streaming handler: writes to call, resolves when the stream should end. */
export type ServerStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  call: grpc.ServerWritableStream<MessageShape<I>, MessageShape<O>>,
  send: (message: MessageInitShape<O>) => boolean,
) => Promise<void>;

export type ServiceHandlers<S extends GenServiceMethods> = {
  [K in keyof Unary<S>]: UnaryHandler<S[K]["input"], S[K]["output"]>;
} & {
  [K in keyof ServerStreaming<S>]: ServerStreamingHandler<S[K]["input"], S[K]["output"]>;
};

/** Turns a thrown error into the status sent to the caller. */
export type ErrorMapper = (error: unknown, method: DescMethod) => grpc.ServiceError | Partial<grpc.StatusObject>;

/** Told of every finished call: for metrics. */
export type CallObserver = (service: string, method: string, code: grpc.status, seconds: number) => void;

/**
 * The grpc-js implementation of promise-based handlers. Every error a
 * handler throws goes through toStatus, the one place codes are chosen.
 */
export function implement<S extends GenServiceMethods>(
  service: GenService<S>,
  handlers: ServiceHandlers<S>,
  toStatus: ErrorMapper,
  observe: CallObserver = () => {},
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  const timer = (method: DescMethod) => {
    const start = process.hrtime.bigint();
    return (code: grpc.status) => observe(service.typeName, method.name, code, Number(process.hrtime.bigint() - start) / 1e9);
  };
  const table = handlers as unknown as Record<string, (...args: never[]) => Promise<unknown>>;
  for (const method of service.methods) {
    const handler = table[method.localName];
    if (!handler) throw new Error(`no handler for ${service.typeName}.${method.name}`);
    if (method.methodKind === "unary") {
      const h = handler as unknown as UnaryHandler<DescMessage, DescMessage>;
      impl[method.localName] = (call: grpc.ServerUnaryCall<MessageShape<DescMessage>, MessageShape<DescMessage>>, callback: grpc.sendUnaryData<MessageShape<DescMessage>>) => {
        const done = timer(method);
        if (isMalformed(call.request)) {
          done(grpc.status.INVALID_ARGUMENT);
          callback({ code: grpc.status.INVALID_ARGUMENT, details: `malformed ${method.input.typeName}` });
          return;
        }
        h(call.request, call).then(
          (res) => {
            done(grpc.status.OK);
            callback(null, create(method.output, res));
          },
          (err: unknown) => {
            const st = toStatus(err, method);
            done(st.code ?? grpc.status.UNKNOWN);
            callback(st);
          },
        );
      };
    } else if (method.methodKind === "server_streaming") {
      const h = handler as unknown as ServerStreamingHandler<DescMessage, DescMessage>;
      impl[method.localName] = (call: grpc.ServerWritableStream<MessageShape<DescMessage>, MessageShape<DescMessage>>) => {
        const send = (m: MessageInitShape<DescMessage>) => call.write(create(method.output, m));
        const done = timer(method);
        if (isMalformed(call.request)) {
          done(grpc.status.INVALID_ARGUMENT);
          call.emit("error", Object.assign(new Error(`malformed ${method.input.typeName}`), { code: grpc.status.INVALID_ARGUMENT }));
          return;
        }
        h(call.request, call, send).then(
          () => {
            done(grpc.status.OK);
            call.end();
          },
          (err: unknown) => {
            const st = toStatus(err, method);
            done(st.code ?? grpc.status.UNKNOWN);
            // grpc-js sends a stream's status after the messages already written.
            call.emit("error", Object.assign(new Error(st.details ?? ""), st));
          },
        );
      };
    } else {
      throw new Error(`${service.typeName}.${method.name}: ${method.methodKind} is not supported`);
    }
  }
  return impl;
}

export interface CallOptions {
  deadline?: grpc.Deadline;
  metadata?: grpc.Metadata;
}

export type ServiceClient<S extends GenServiceMethods> = {
  [K in keyof Unary<S>]: (
    request: MessageInitShape<S[K]["input"]>,
    options?: CallOptions,
  ) => Promise<MessageShape<S[K]["output"]>>;
} & {
  [K in keyof ServerStreaming<S>]: (
    request: MessageInitShape<S[K]["input"]>,
    options?: CallOptions,
  ) => grpc.ClientReadableStream<MessageShape<S[K]["output"]>>;
} & { close(): void; grpc: grpc.Client };

/** A promise-based client of a protobuf-es service over grpc-js. */
export function createClient<S extends GenServiceMethods>(
  service: GenService<S>,
  address: string,
  credentials: grpc.ChannelCredentials,
  options: grpc.ClientOptions = {},
): ServiceClient<S> {
  const client = new grpc.Client(address, credentials, options);
  const stub: Record<string, unknown> = {
    close: () => client.close(),
    grpc: client,
  };
  for (const method of service.methods) {
    const def = methodDefinition(service, method);
    // The arguments both call kinds share: path, codecs, message, metadata, options.
    const args = (req: MessageInitShape<DescMessage>, opts: CallOptions) =>
      [
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        create(method.input, req),
        opts.metadata ?? new grpc.Metadata(),
        opts.deadline !== undefined ? { deadline: opts.deadline } : {},
      ] as const;
    if (method.methodKind === "unary") {
      stub[method.localName] = (req: MessageInitShape<DescMessage>, opts: CallOptions = {}) =>
        new Promise((resolve, reject) => {
          client.makeUnaryRequest(...args(req, opts), (err, res) => (err ? reject(err) : resolve(res)));
        });
    } else if (method.methodKind === "server_streaming") {
      stub[method.localName] = (req: MessageInitShape<DescMessage>, opts: CallOptions = {}) => client.makeServerStreamRequest(...args(req, opts));
    }
  }
  return stub as ServiceClient<S>;
}
