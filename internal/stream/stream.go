// Package stream is the byte pipeline between a source and the repository:
// plaintext → SHA-256 → zstd → age → SHA-256 → storage, and back. Everything streams
// with bounded memory; sizes and hashes of both sides come out for the manifest.
package stream

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// Compression names as recorded in manifests.
const (
	CompressionZstd = "zstd"
	CompressionNone = "none"
)

// Encoding says how one stored object was written; it is recorded per object so a
// repository can mix settings over its life.
type Encoding struct {
	Compression string `json:"compression"`
	Encrypted   bool   `json:"encrypted"`
}

// Sum is the size and SHA-256 of one side of an object.
type Sum struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Config builds a Codec.
type Config struct {
	Compression string // zstd (default) | none
	Level       int    // zstd level; 0 means 3
	// Recipients receive every object written; none means objects are not encrypted.
	Recipients []age.Recipient
	// Identities decrypt objects on read; none means encrypted objects cannot be read.
	Identities []age.Identity
}

// Codec encodes and decodes objects. It is safe for concurrent use and reuses
// zstd encoders and decoders, which are costly to build.
type Codec struct {
	compression string
	level       zstd.EncoderLevel
	recipients  []age.Recipient
	identities  []age.Identity
	encoders    sync.Pool
	decoders    sync.Pool
}

// ErrNoKey is returned when an encrypted object must be read but the codec has no identity.
var ErrNoKey = errors.New("the object is encrypted and no decryption key is configured (identity_file or passphrase)")

// CorruptError reports stored bytes that do not decode or do not match their manifest.
type CorruptError struct{ Reason string }

func (e *CorruptError) Error() string { return "corrupt: " + e.Reason }

// IsCorrupt reports whether err says stored data is damaged.
func IsCorrupt(err error) bool {
	var c *CorruptError
	return errors.As(err, &c)
}

// New returns a Codec for cfg.
func New(cfg Config) (*Codec, error) {
	c := &Codec{compression: cfg.Compression, recipients: cfg.Recipients, identities: cfg.Identities}
	switch c.compression {
	case "":
		c.compression = CompressionZstd
	case CompressionZstd, CompressionNone:
	default:
		return nil, fmt.Errorf("unknown compression %q", cfg.Compression)
	}
	level := cfg.Level
	if level == 0 {
		level = 3
	}
	c.level = zstd.EncoderLevelFromZstd(level)
	return c, nil
}

// Encoding is what NewWriter produces.
func (c *Codec) Encoding() Encoding {
	return Encoding{Compression: c.compression, Encrypted: len(c.recipients) > 0}
}

// CanDecrypt reports whether the codec holds a key to read encrypted objects.
func (c *Codec) CanDecrypt() bool { return len(c.identities) > 0 }

func (c *Codec) encoder(w io.Writer) (*zstd.Encoder, error) {
	if e, ok := c.encoders.Get().(*zstd.Encoder); ok {
		e.Reset(w)
		return e, nil
	}
	// One goroutine per encoder: parallelism comes from the callers' workers, and
	// this keeps each encoder's memory small and predictable.
	return zstd.NewWriter(w, zstd.WithEncoderLevel(c.level), zstd.WithEncoderConcurrency(1))
}

func (c *Codec) decoder(r io.Reader) (*zstd.Decoder, error) {
	if d, ok := c.decoders.Get().(*zstd.Decoder); ok {
		if err := d.Reset(r); err != nil {
			return nil, err
		}
		return d, nil
	}
	return zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
}

// countHash counts and hashes the bytes passing through it.
type countHash struct {
	n int64
	h hash.Hash
}

func newCountHash() *countHash { return &countHash{h: sha256.New()} }

func (c *countHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.h == nil {
		return len(p), nil
	}
	return c.h.Write(p)
}

func (c *countHash) sum() Sum {
	if c.h == nil {
		return Sum{Size: c.n}
	}
	return Sum{Size: c.n, SHA256: hex.EncodeToString(c.h.Sum(nil))}
}

// Writer takes plaintext and writes the stored form to its destination.
type Writer struct {
	codec  *Codec
	plain  *countHash
	stored *countHash
	zw     *zstd.Encoder
	aw     io.WriteCloser
	head   io.Writer // where plaintext goes after being hashed
	closed bool
}

// NewWriter starts an object whose stored bytes go to dst. Close finishes the object
// but does not close dst.
func (c *Codec) NewWriter(dst io.Writer) (*Writer, error) {
	return c.newWriter(dst, true)
}

// NewUnhashedWriter is NewWriter without the plaintext hash, for callers that hash
// the plaintext in pieces themselves (pack volumes hash each extent): SHA-256 is a
// large share of the CPU a backup costs.
func (c *Codec) NewUnhashedWriter(dst io.Writer) (*Writer, error) {
	return c.newWriter(dst, false)
}

func (c *Codec) newWriter(dst io.Writer, hashPlain bool) (*Writer, error) {
	w := &Writer{codec: c, plain: &countHash{}, stored: newCountHash()}
	if hashPlain {
		w.plain = newCountHash()
	}
	var sink io.Writer = io.MultiWriter(dst, w.stored)
	if len(c.recipients) > 0 {
		aw, err := age.Encrypt(sink, c.recipients...)
		if err != nil {
			return nil, fmt.Errorf("start encryption: %w", err)
		}
		w.aw = aw
		sink = aw
	}
	if c.compression == CompressionZstd {
		zw, err := c.encoder(sink)
		if err != nil {
			return nil, fmt.Errorf("start compression: %w", err)
		}
		w.zw = zw
		sink = zw
	}
	w.head = sink
	return w, nil
}

func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errors.New("stream: write after close")
	}
	w.plain.Write(p)
	return w.head.Write(p)
}

// Close flushes compression and encryption. After Close, Plain and Stored are final.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if w.zw != nil {
		err := w.zw.Close()
		w.zw.Reset(nil)
		w.codec.encoders.Put(w.zw)
		w.zw = nil
		if err != nil {
			return fmt.Errorf("finish compression: %w", err)
		}
	}
	if w.aw != nil {
		if err := w.aw.Close(); err != nil {
			return fmt.Errorf("finish encryption: %w", err)
		}
	}
	return nil
}

// Abort releases resources without finishing the object.
func (w *Writer) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	if w.zw != nil {
		w.zw.Reset(nil)
		w.codec.encoders.Put(w.zw)
		w.zw = nil
	}
}

// Plain is the size and hash of the plaintext written so far.
func (w *Writer) Plain() Sum { return w.plain.sum() }

// Stored is the size and hash of the stored bytes written so far (final after Close).
func (w *Writer) Stored() Sum { return w.stored.sum() }

// Expect is what a reader checks at the end of an object; empty fields are not checked.
type Expect struct {
	Plain  Sum
	Stored Sum
}

// Reader decodes a stored object back to plaintext. At the end of the object it
// drains the source, then checks sizes and hashes against Expect: a mismatch is
// returned in place of io.EOF, so a consumer never mistakes damage for success.
type Reader struct {
	codec  *Codec
	src    io.Reader // stored bytes, hashed as they are read
	stored *countHash
	plain  *countHash
	body   io.Reader
	zr     *zstd.Decoder
	expect Expect
	done   bool
	err    error
}

// NewReader decodes src, which holds an object written with enc.
func (c *Codec) NewReader(src io.Reader, enc Encoding, expect Expect) (*Reader, error) {
	r := &Reader{codec: c, stored: newCountHash(), plain: &countHash{}, expect: expect}
	if expect.Plain.SHA256 != "" {
		// Hash the plaintext only when it is checked: pack volumes are checked extent
		// by extent by the caller, and SHA-256 is a large part of a restore's CPU.
		r.plain = newCountHash()
	}
	r.src = io.TeeReader(src, r.stored)
	body := r.src
	if enc.Encrypted {
		if len(c.identities) == 0 {
			return nil, ErrNoKey
		}
		ar, err := age.Decrypt(body, c.identities...)
		if err != nil {
			var nomatch *age.NoIdentityMatchError
			if errors.As(err, &nomatch) {
				return nil, fmt.Errorf("decryption key does not match this repository's data: %w", err)
			}
			return nil, &CorruptError{Reason: "encryption header: " + err.Error()}
		}
		body = ar
	}
	switch enc.Compression {
	case CompressionZstd:
		zr, err := c.decoder(body)
		if err != nil {
			return nil, &CorruptError{Reason: "compression header: " + err.Error()}
		}
		r.zr = zr
		body = zr
	case CompressionNone, "":
	default:
		return nil, fmt.Errorf("unknown compression %q", enc.Compression)
	}
	r.body = body
	return r, nil
}

func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.body.Read(p)
	r.plain.Write(p[:n])
	if err == io.EOF {
		err = r.finish()
		if err == nil {
			err = io.EOF
		}
	} else if err != nil && !isSourceError(err) {
		err = &CorruptError{Reason: err.Error()}
	}
	if err != nil {
		r.err = err
		r.release()
	}
	return n, err
}

// sourceError marks errors from the underlying storage reader, so they are not
// mistaken for damage to the data.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

func isSourceError(err error) bool {
	var s *sourceError
	return errors.As(err, &s)
}

// finish drains what is left of the stored bytes and checks both sums.
func (r *Reader) finish() error {
	if _, err := io.Copy(io.Discard, r.src); err != nil {
		return err
	}
	ps, ss := r.plain.sum(), r.stored.sum()
	if r.expect.Stored.SHA256 != "" && (ss.SHA256 != r.expect.Stored.SHA256 || ss.Size != r.expect.Stored.Size) {
		return &CorruptError{Reason: fmt.Sprintf("stored bytes do not match the manifest (size %d, want %d; sha256 %.12s…, want %.12s…)",
			ss.Size, r.expect.Stored.Size, ss.SHA256, r.expect.Stored.SHA256)}
	}
	if r.expect.Plain.SHA256 != "" && (ps.SHA256 != r.expect.Plain.SHA256 || ps.Size != r.expect.Plain.Size) {
		return &CorruptError{Reason: fmt.Sprintf("decoded bytes do not match the manifest (size %d, want %d)", ps.Size, r.expect.Plain.Size)}
	}
	r.done = true
	return nil
}

func (r *Reader) release() {
	if r.zr != nil {
		r.zr.Reset(nil)
		r.codec.decoders.Put(r.zr)
		r.zr = nil
	}
}

// Close releases the reader's resources; it does not close the source.
func (r *Reader) Close() error {
	r.release()
	if r.err == nil {
		r.err = errors.New("stream: read after close")
	}
	return nil
}

// Verified reports whether the whole object was read and matched Expect.
func (r *Reader) Verified() bool { return r.done }

// Plain and Stored are the sums of what has been read so far.
func (r *Reader) Plain() Sum  { return r.plain.sum() }
func (r *Reader) Stored() Sum { return r.stored.sum() }

// SourceReader wraps a storage reader so its errors are reported as storage errors,
// not as damaged data.
func SourceReader(r io.Reader) io.Reader { return sourceReader{r} }

type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &sourceError{err}
	}
	return n, err
}

// Encode is a convenience for small objects held in memory.
func (c *Codec) Encode(plain []byte) (stored []byte, ps, ss Sum, err error) {
	var buf bytes.Buffer
	w, err := c.NewWriter(&buf)
	if err != nil {
		return nil, Sum{}, Sum{}, err
	}
	if _, err := w.Write(plain); err != nil {
		w.Abort()
		return nil, Sum{}, Sum{}, err
	}
	if err := w.Close(); err != nil {
		return nil, Sum{}, Sum{}, err
	}
	return buf.Bytes(), w.Plain(), w.Stored(), nil
}

// Decode is a convenience for small objects held in memory.
func (c *Codec) Decode(stored []byte, enc Encoding, expect Expect) ([]byte, error) {
	r, err := c.NewReader(bytes.NewReader(stored), enc, expect)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// EncodeParallel encodes a whole object held in memory using several goroutines:
// the plaintext is cut into parts compressed at once as consecutive zstd frames
// (one stream to a reader: a zstd decoder reads frames one after the other), then
// encrypted. No hashes are taken: callers that need one hash the plaintext beside
// it. For WAL segments, whose compression is what archive_command waits for.
func (c *Codec) EncodeParallel(plain []byte, parts int) ([]byte, error) {
	body := plain
	if c.compression == CompressionZstd {
		parts = max(1, min(parts, len(plain)/(1<<20)+1))
		outs := make([][]byte, parts)
		errs := make([]error, parts)
		var wg sync.WaitGroup
		size := (len(plain) + parts - 1) / parts
		for i := 0; i < parts; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				chunk := plain[min(i*size, len(plain)):min((i+1)*size, len(plain))]
				enc, err := c.encoder(nil)
				if err != nil {
					errs[i] = err
					return
				}
				outs[i] = enc.EncodeAll(chunk, make([]byte, 0, len(chunk)/4+64))
				c.encoders.Put(enc)
			}(i)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, fmt.Errorf("compress: %w", err)
			}
		}
		body = bytes.Join(outs, nil)
	}
	if len(c.recipients) == 0 {
		return body, nil
	}
	out := bytes.NewBuffer(make([]byte, 0, len(body)+len(body)/64+512))
	aw, err := age.Encrypt(out, c.recipients...)
	if err != nil {
		return nil, fmt.Errorf("start encryption: %w", err)
	}
	if _, err := aw.Write(body); err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("finish encryption: %w", err)
	}
	return out.Bytes(), nil
}
