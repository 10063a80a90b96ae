package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	mrand "math/rand"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

const heartbeatPath = "/cloud.bmaas.server.api.AgentCallback/Heartbeat"

// rawCodec passes bytes through, so the request is exactly what we encoded
// (as test/interop/go-agent does: no generated code, only the wire format).
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                               { return "proto" }

// ephemeralCert follows the Go agents' template: serial 1, no subject, valid
// from now until the end of 9999, clientAuth, basic constraints present.
func ephemeralCert(priv ed25519.PrivateKey) (tls.Certificate, error) {
	template := x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now(),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, priv.Public(), priv)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}

// heartbeatRequest is HeartbeatRequest{machine_id} (field 1), hand-encoded.
func heartbeatRequest(machineID string) []byte {
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	return protowire.AppendString(req, machineID)
}

// agent is one simulated machine: its own key, certificate, source address
// and persistent connection (its own grpc.ClientConn).
type agent struct {
	index   int
	request []byte
	creds   credentials.TransportCredentials
	source  net.IP

	mu   sync.Mutex
	conn *grpc.ClientConn
}

type config struct {
	address  string
	deadline time.Duration
	resume   bool
}

func newAgent(index int, machineID string, seed []byte, cfg *config) (*agent, error) {
	cert, err := ephemeralCert(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // the bench does not verify the server
		ServerName:         "localhost",
	}
	if cfg.resume {
		tc.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	return &agent{
		index:   index,
		request: heartbeatRequest(machineID),
		creds:   credentials.NewTLS(tc),
		// 127.0.1.1 … 127.0.1.254: many source addresses, so that ten
		// thousands of connections do not run out of ephemeral ports.
		source: net.IPv4(127, 0, 1, byte(1+index%254)),
	}, nil
}

// dial creates the agent's connection once; grpc-go connects in the
// background and reconnects by itself (backoff like the agents': 0.5 s ×1.5).
func (a *agent) dial(cfg *config) (*grpc.ClientConn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		return a.conn, nil
	}
	source := &net.TCPAddr{IP: a.source}
	conn, err := grpc.Dial(cfg.address,
		grpc.WithTransportCredentials(a.creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: source}
			return d.DialContext(ctx, "tcp", addr)
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.5, Jitter: 0.2, MaxDelay: 60 * time.Second},
			MinConnectTimeout: 20 * time.Second,
		}),
		// Heartbeats are tiny: keep ten thousands of transports small.
		grpc.WithReadBufferSize(8<<10),
		grpc.WithWriteBufferSize(8<<10),
	)
	if err != nil {
		return nil, err
	}
	a.conn = conn
	return conn, nil
}

func (a *agent) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		a.conn.Close()
		a.conn = nil
	}
}

type result struct {
	code     codes.Code
	latency  time.Duration
	pushback int // grpc-retry-pushback-ms, -1 when absent
	end      time.Time
}

// heartbeat sends one heartbeat with the per-call deadline, the way the Go
// agents do (fail fast while the connection is down, no wait-for-ready).
func (a *agent) heartbeat(cfg *config) result {
	start := time.Now()
	conn, err := a.dial(cfg)
	if err != nil {
		return result{code: codes.Unavailable, latency: time.Since(start), pushback: -1, end: time.Now()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.deadline)
	defer cancel()
	var header, trailer metadata.MD
	var resp []byte
	req := a.request
	err = conn.Invoke(ctx, heartbeatPath, &req, &resp, grpc.ForceCodec(rawCodec{}), grpc.Header(&header), grpc.Trailer(&trailer))
	end := time.Now()
	r := result{code: status.Code(err), latency: end.Sub(start), pushback: -1, end: end}
	for _, md := range []metadata.MD{trailer, header} {
		if v := md.Get("grpc-retry-pushback-ms"); len(v) > 0 {
			if n, err := strconv.Atoi(v[0]); err == nil {
				r.pushback = n
			} else {
				r.pushback = 0
			}
			break
		}
	}
	return r
}

// agentBackoff is the reference agent's: 0.5 s growing ×1.5 to 60 s, ±20%.
type agentBackoff struct{ next time.Duration }

func (b *agentBackoff) delay(rng *mrand.Rand) time.Duration {
	if b.next == 0 {
		b.next = 500 * time.Millisecond
	}
	d := b.next
	b.next = time.Duration(float64(b.next) * 1.5)
	if b.next > 60*time.Second {
		b.next = 60 * time.Second
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rng.Float64()))
}
