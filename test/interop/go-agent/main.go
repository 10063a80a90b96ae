// A minimal agent written the way the Go agents in the field are: grpc-go over
// crypto/tls, an ephemeral self-signed Ed25519 client certificate built from
// the same template, the server verified against a given CA. It sends one
// Heartbeat with hand-encoded protobuf (no generated code, so it depends only
// on the wire format) and prints the outcome as one JSON line.
//
// Usage: go-agent ADDRESS SERVICE MACHINE_ID SEED_HEX CA_FILE [REPORT_GENERATION]
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"math/big"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// rawCodec passes bytes through, so the request is exactly what we encoded.
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

func request(machineID string, reportGeneration int64) []byte {
	// cloud.agent.api.Node{manufacturer: "GoAgent", cpu: [{hardware_threads: 4}]}
	var cpu []byte
	cpu = protowire.AppendTag(cpu, 9, protowire.VarintType)
	cpu = protowire.AppendVarint(cpu, 4)
	var node []byte
	node = protowire.AppendTag(node, 1, protowire.BytesType)
	node = protowire.AppendString(node, "GoAgent")
	node = protowire.AppendTag(node, 10, protowire.BytesType)
	node = protowire.AppendBytes(node, cpu)
	var hw []byte
	hw = protowire.AppendTag(hw, 1, protowire.BytesType)
	hw = protowire.AppendBytes(hw, node)

	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendString(req, machineID)
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendBytes(req, hw)
	if reportGeneration > 0 {
		// OSInstallationReport{generation, success: {}}
		var rep []byte
		rep = protowire.AppendTag(rep, 1, protowire.VarintType)
		rep = protowire.AppendVarint(rep, uint64(reportGeneration))
		rep = protowire.AppendTag(rep, 2, protowire.BytesType)
		rep = protowire.AppendBytes(rep, nil)
		req = protowire.AppendTag(req, 3, protowire.BytesType)
		req = protowire.AppendBytes(req, rep)
	}
	return req
}

// requestedGeneration reads HeartbeatResponse.installation_request.generation (0 if absent).
func requestedGeneration(resp []byte) int64 {
	for len(resp) > 0 {
		num, typ, n := protowire.ConsumeTag(resp)
		resp = resp[n:]
		if num == 1 && typ == protowire.BytesType {
			inner, _ := protowire.ConsumeBytes(resp)
			for len(inner) > 0 {
				f, t, m := protowire.ConsumeTag(inner)
				inner = inner[m:]
				if f == 1 && t == protowire.VarintType {
					v, _ := protowire.ConsumeVarint(inner)
					return int64(v)
				}
				inner = inner[protowire.ConsumeFieldValue(f, t, inner):]
			}
			return 0
		}
		resp = resp[protowire.ConsumeFieldValue(num, typ, resp):]
	}
	return 0
}

func main() {
	if len(os.Args) < 6 {
		fmt.Fprintln(os.Stderr, "usage: go-agent ADDRESS SERVICE MACHINE_ID SEED_HEX CA_FILE [REPORT_GENERATION]")
		os.Exit(2)
	}
	address, service, machineID := os.Args[1], os.Args[2], os.Args[3]
	seed, err := hex.DecodeString(os.Args[4])
	if err != nil || len(seed) != ed25519.SeedSize {
		fmt.Fprintln(os.Stderr, "bad seed")
		os.Exit(2)
	}
	var reportGeneration int64
	if len(os.Args) > 6 {
		reportGeneration, _ = strconv.ParseInt(os.Args[6], 10, 64)
	}
	caPEM, err := ioutil.ReadFile(os.Args[5])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := ephemeralCert(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "localhost"})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, address, grpc.WithTransportCredentials(creds), grpc.WithBlock())
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()

	req := request(machineID, reportGeneration)
	var resp []byte
	err = conn.Invoke(ctx, "/"+service+"/Heartbeat", &req, &resp, grpc.ForceCodec(rawCodec{}))
	st := status.Convert(err)
	out, _ := json.Marshal(map[string]interface{}{
		"code":       int(st.Code()),
		"message":    st.Message(),
		"generation": requestedGeneration(resp),
	})
	fmt.Println(string(out))
}
