package stream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
)

// DefaultWorkFactor is the scrypt cost (2^16, 64 MiB, about 0.2 s here) used to wrap a
// repository key. The repository records the factor it used, so it can be raised later.
const DefaultWorkFactor = 16

// ErrWrongPassphrase is returned when a passphrase does not unwrap the repository key.
var ErrWrongPassphrase = errors.New("wrong passphrase: it does not unlock this repository's key")

// NewRepositoryKey makes the random X25519 identity that encrypts a repository's objects.
func NewRepositoryKey() (*age.X25519Identity, error) {
	return age.GenerateX25519Identity()
}

// WrapKey encrypts the identity with the passphrase (scrypt, run once per repository
// open rather than once per object).
func WrapKey(id *age.X25519Identity, passphrase string, workFactor int) ([]byte, error) {
	r, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		return nil, err
	}
	r.SetWorkFactor(workFactor)
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, id.String()); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// UnwrapKey recovers the identity wrapped by WrapKey.
func UnwrapKey(wrapped []byte, passphrase string, maxWorkFactor int) (*age.X25519Identity, error) {
	sid, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, err
	}
	sid.SetMaxWorkFactor(maxWorkFactor)
	r, err := age.Decrypt(bytes.NewReader(wrapped), sid)
	if err != nil {
		var nomatch *age.NoIdentityMatchError
		if errors.As(err, &nomatch) || errors.Is(err, age.ErrIncorrectIdentity) {
			return nil, ErrWrongPassphrase
		}
		return nil, fmt.Errorf("unwrap repository key: %w", err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("unwrap repository key: %w", err)
	}
	return age.ParseX25519Identity(strings.TrimSpace(string(b)))
}

// ParseRecipients parses age X25519 public keys (age1...).
func ParseRecipients(keys []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, k := range keys {
		r, err := age.ParseX25519Recipient(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("recipient %q: %w", k, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// ReadIdentityFile reads age identities (AGE-SECRET-KEY-1...) from a file. The error
// names the file but never its contents.
func ReadIdentityFile(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: not a valid age identity file", path)
	}
	return ids, nil
}
