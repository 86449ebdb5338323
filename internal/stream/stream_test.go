package stream

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"filippo.io/age"
)

func testData(n int) []byte {
	// Half random, half repetitive: exercises both compressible and incompressible input.
	b := make([]byte, n)
	rand.Read(b[:n/2])
	for i := n / 2; i < n; i++ {
		b[i] = byte(i % 7)
	}
	return b
}

func codecs(t *testing.T) map[string]*Codec {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*Codec{}
	for _, comp := range []string{CompressionZstd, CompressionNone} {
		for _, enc := range []bool{true, false} {
			cfg := Config{Compression: comp}
			name := comp
			if enc {
				cfg.Recipients = []age.Recipient{id.Recipient()}
				cfg.Identities = []age.Identity{id}
				name += "+age"
			}
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = c
		}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	for name, c := range codecs(t) {
		t.Run(name, func(t *testing.T) {
			for _, n := range []int{0, 1, 65536, 3<<20 + 17} {
				data := testData(n)
				stored, ps, ss, err := c.Encode(data)
				if err != nil {
					t.Fatal(err)
				}
				if ps.Size != int64(n) || ss.Size != int64(len(stored)) {
					t.Fatalf("sums: plain %d want %d, stored %d want %d", ps.Size, n, ss.Size, len(stored))
				}
				if c.Encoding().Encrypted && bytes.Contains(stored, data[n/2:min(n, n/2+64)]) && n > 1000 {
					t.Fatal("encrypted object contains plaintext")
				}
				got, err := c.Decode(stored, c.Encoding(), Expect{Plain: ps, Stored: ss})
				if err != nil {
					t.Fatalf("decode %d bytes: %v", n, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("round trip of %d bytes differs", n)
				}
			}
		})
	}
}

func TestCompressionShrinks(t *testing.T) {
	c, _ := New(Config{})
	data := bytes.Repeat([]byte("hartonomous atoms "), 100000)
	stored, _, _, err := c.Encode(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored)*20 > len(data) {
		t.Fatalf("zstd stored %d bytes of %d: not compressed", len(stored), len(data))
	}
}

func TestDamageDetected(t *testing.T) {
	for name, c := range codecs(t) {
		t.Run(name, func(t *testing.T) {
			data := testData(1 << 20)
			stored, ps, ss, err := c.Encode(data)
			if err != nil {
				t.Fatal(err)
			}
			rng := mrand.New(mrand.NewPCG(1, 2))
			for i := 0; i < 20; i++ {
				bad := bytes.Clone(stored)
				pos := rng.IntN(len(bad))
				bad[pos] ^= 1 << rng.IntN(8)
				_, err := c.Decode(bad, c.Encoding(), Expect{Plain: ps, Stored: ss})
				if err == nil {
					t.Fatalf("flipped byte %d of %d not detected", pos, len(bad))
				}
				if !IsCorrupt(err) {
					t.Fatalf("flipped byte %d: error %v is not a CorruptError", pos, err)
				}
			}
			// Truncation.
			_, err = c.Decode(stored[:len(stored)-10], c.Encoding(), Expect{Plain: ps, Stored: ss})
			if !IsCorrupt(err) {
				t.Fatalf("truncation: got %v", err)
			}
		})
	}
}

func TestWrongKey(t *testing.T) {
	a, _ := age.GenerateX25519Identity()
	b, _ := age.GenerateX25519Identity()
	wc, _ := New(Config{Recipients: []age.Recipient{a.Recipient()}})
	rc, _ := New(Config{Identities: []age.Identity{b}})
	stored, _, _, err := wc.Encode([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rc.Decode(stored, wc.Encoding(), Expect{})
	if err == nil || IsCorrupt(err) || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("wrong key: got %v", err)
	}
	nokey, _ := New(Config{})
	if _, err := nokey.Decode(stored, wc.Encoding(), Expect{}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: got %v", err)
	}
}

func TestSourceErrorIsNotCorruption(t *testing.T) {
	c, _ := New(Config{})
	stored, _, _, _ := c.Encode(testData(1 << 20))
	boom := errors.New("connection reset")
	src := io.MultiReader(bytes.NewReader(stored[:1000]), errReader{boom})
	r, err := c.NewReader(SourceReader(src), c.Encoding(), Expect{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, r)
	if !errors.Is(err, boom) || IsCorrupt(err) {
		t.Fatalf("got %v, want the storage error unwrapped and not corrupt", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestWrapKey(t *testing.T) {
	id, _ := NewRepositoryKey()
	wrapped, err := WrapKey(id, "correct horse", 10)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(wrapped, []byte(id.String())) {
		t.Fatal("wrapped key holds the identity in clear")
	}
	got, err := UnwrapKey(wrapped, "correct horse", 20)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != id.String() {
		t.Fatal("unwrapped a different key")
	}
	if _, err := UnwrapKey(wrapped, "wrong", 20); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: got %v", err)
	}
}

func TestEncodeParallelRoundTrip(t *testing.T) {
	for name, c := range codecs(t) {
		for _, n := range []int{0, 100, 5<<20 + 3} {
			data := testData(n)
			for _, parts := range []int{1, 2, 3} {
				stored, err := c.EncodeParallel(data, parts)
				if err != nil {
					t.Fatal(err)
				}
				got, err := c.Decode(stored, c.Encoding(), Expect{})
				if err != nil {
					t.Fatalf("%s, %d bytes, %d parts: %v", name, n, parts, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("%s, %d bytes, %d parts: round trip differs", name, n, parts)
				}
			}
		}
	}
}
