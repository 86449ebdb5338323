// Package repo is the repository: its layout, metadata and keys, manifests, the pack
// volumes that hold backup data, locks, and replicas. It knows storage and manifests;
// it does not know databases.
//
// Layout (every key relative to the repository root):
//
//	hartvault.json                        format version, encryption parameters
//	backups/<source>/<id>.manifest        one per committed backup, written last
//	data/<source>/<id>/<nnnnnn>.vol       pack volumes of that backup
//	locks/<source>.lock                   the source's writer lock
package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"github.com/hartonomous/hartvault/internal/storage"
	"github.com/hartonomous/hartvault/internal/stream"
)

// FormatVersion is the repository format this build reads and writes.
const FormatVersion = 1

// ConfigKey is the repository's metadata object.
const ConfigKey = "hartvault.json"

// Encryption modes recorded in the repository metadata.
const (
	ModePassphrase = "passphrase"
	ModeRecipients = "recipients"
	ModeNone       = "none"
)

// Config is the repository metadata stored at ConfigKey. It holds no secret in clear.
type Config struct {
	Format     int              `json:"format"`
	ID         string           `json:"id"`
	Created    time.Time        `json:"created"`
	CreatedBy  string           `json:"created_by"`
	Encryption EncryptionConfig `json:"encryption"`
}

// EncryptionConfig says how objects are encrypted.
type EncryptionConfig struct {
	Mode string `json:"mode"`
	// Passphrase mode: objects are encrypted to Recipient, whose identity is kept
	// here wrapped by the passphrase (age scrypt, WorkFactor).
	Recipient  string `json:"recipient,omitempty"`
	WrappedKey []byte `json:"wrapped_key,omitempty"`
	WorkFactor int    `json:"work_factor,omitempty"`
	// Recipients mode: objects are encrypted to these public keys.
	Recipients []string `json:"recipients,omitempty"`
}

// Keys is where a run gets its key material. Secrets are read lazily, only by
// operations that need to decrypt.
type Keys struct {
	// None disables encryption (the plan said encryption: none).
	None bool
	// Passphrase returns the passphrase (from the environment or a file).
	Passphrase func() (string, error)
	// Recipients are age public keys (recipients mode).
	Recipients []string
	// Identities returns the identities that decrypt in recipients mode (nil: none configured).
	Identities func() ([]age.Identity, error)
}

// Options open or create a repository.
type Options struct {
	URL      string
	Replicas []string
	Keys     Keys
	// Compression "zstd" (default) or "none"; Level the zstd level (default 3).
	Compression string
	Level       int
	// VolumeSize is the plaintext size at which a pack volume is sealed.
	VolumeSize int64
	// Workers is the parallelism of backups, restores and verification (default NumCPU).
	Workers     int
	TempDir     string
	Logger      *slog.Logger
	Now         func() time.Time
	ToolVersion string
	// Storage overrides how storage is opened (tests inject fault wrappers).
	OpenStore func(ctx context.Context, url string) (*storage.Store, error)
	// AsReplica opens a replica of another repository as a repository of its own
	// (retention prunes each replica by the same rules). Data without a manifest is
	// then not a leftover: it may be a backup the primary is copying there now.
	AsReplica bool
	// WorkFactor is the scrypt cost (log2) Init wraps a new key with; 0 means
	// stream.DefaultWorkFactor. Tests lower it.
	WorkFactor int
	// Tiers maps a backup type or a source kind (the kind wins) to an access tier.
	Tiers map[string]string
	// Immutable locks every object written (data, manifests, log) for this long.
	Immutable time.Duration
}

// tierFor picks the access tier of a backup's objects.
func (o *Options) tierFor(kind, typ string) string {
	if t, ok := o.Tiers[kind]; ok {
		return t
	}
	return o.Tiers[typ]
}

// putOptions are the write options of an object of a backup of kind and type.
func (r *Repo) putOptions(kind, typ string) storage.PutOptions {
	po := storage.PutOptions{Tier: r.opts.tierFor(kind, typ)}
	if r.deferArchive(po.Tier) {
		po.Tier = "" // moved to the archive tier once every replica holds a copy
	}
	if r.opts.Immutable > 0 {
		po.RetainUntil = r.opts.Now().Add(r.opts.Immutable)
	}
	return po
}

// deferArchive reports whether objects bound for the archive tier are first written
// to the default tier: an archived object cannot be read, and replicas copy what the
// primary holds after a backup commits. Without replicas, or on storage that cannot
// change an object's tier in place, they go to the archive tier at once.
func (r *Repo) deferArchive(tier string) bool {
	return strings.EqualFold(tier, "archive") && len(r.opts.Replicas) > 0 && !r.opts.AsReplica && r.store != nil && r.store.CanSetTier()
}

// Repo is an open repository.
type Repo struct {
	opts    Options
	store   *storage.Store
	config  Config
	log     *slog.Logger
	host    string
	writeCd *stream.Codec // encodes objects; needs only public keys

	unlockOnce sync.Once
	readCd     *stream.Codec // decodes objects; needs the private key
	unlockErr  error

	// Replicas read from when the primary cannot give an object (readFallback).
	replicaMu     sync.Mutex
	replicaStores map[string]*storage.Store
	primaryDown   atomic.Bool
}

// ErrNoRepository means nothing is at the URL.
var ErrNoRepository = errors.New("no repository")

// NotFoundError says no repository exists at a URL.
type NotFoundError struct{ URL string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no repository at %s (create it with: hartvault init)", e.URL)
}
func (e *NotFoundError) Unwrap() error { return ErrNoRepository }

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.VolumeSize <= 0 {
		o.VolumeSize = 256 << 20
	}
	if o.ToolVersion == "" {
		o.ToolVersion = "hartvault (dev)"
	}
	if o.OpenStore == nil {
		o.OpenStore = func(ctx context.Context, url string) (*storage.Store, error) {
			return storage.Open(ctx, url, storage.Options{SpoolDir: o.TempDir, Logger: o.Logger})
		}
	}
}

// Init creates the repository at opts.URL and at each replica. It refuses when a
// repository already exists at the primary URL.
func Init(ctx context.Context, opts Options) (*Config, error) {
	opts.defaults()
	cfg := Config{Format: FormatVersion, Created: opts.Now().UTC(), CreatedBy: opts.ToolVersion}
	cfg.ID = randomHex(16)
	switch {
	case opts.Keys.None:
		cfg.Encryption.Mode = ModeNone
	case len(opts.Keys.Recipients) > 0:
		if _, err := stream.ParseRecipients(opts.Keys.Recipients); err != nil {
			return nil, err
		}
		cfg.Encryption = EncryptionConfig{Mode: ModeRecipients, Recipients: opts.Keys.Recipients}
	case opts.Keys.Passphrase != nil:
		pass, err := opts.Keys.Passphrase()
		if err != nil {
			return nil, err
		}
		id, err := stream.NewRepositoryKey()
		if err != nil {
			return nil, err
		}
		wf := opts.WorkFactor
		if wf == 0 {
			wf = stream.DefaultWorkFactor
		}
		wrapped, err := stream.WrapKey(id, pass, wf)
		if err != nil {
			return nil, fmt.Errorf("wrap repository key: %w", err)
		}
		cfg.Encryption = EncryptionConfig{Mode: ModePassphrase, Recipient: id.Recipient().String(),
			WrappedKey: wrapped, WorkFactor: wf}
	default:
		return nil, errors.New("no encryption key configured: set passphrase_env, passphrase_file or recipients, or encryption: none")
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	for i, url := range append([]string{opts.URL}, opts.Replicas...) {
		st, err := opts.OpenStore(ctx, url)
		if err != nil {
			return nil, err
		}
		err = initOne(ctx, st, data, i == 0)
		st.Close()
		if err != nil {
			return nil, err
		}
	}
	return &cfg, nil
}

func initOne(ctx context.Context, st *storage.Store, data []byte, primary bool) error {
	if err := st.Create(ctx); err != nil {
		return fmt.Errorf("create %s: %w", st, err)
	}
	err := st.Put(ctx, ConfigKey, data, storage.PutOptions{IfNotExist: true})
	if errors.Is(err, storage.ErrExists) {
		existing, rerr := st.ReadAll(ctx, ConfigKey)
		if rerr == nil && !primary && string(existing) == string(data) {
			return nil
		}
		return fmt.Errorf("a repository already exists at %s: refusing to initialise it again", st)
	}
	if err != nil {
		return fmt.Errorf("write repository metadata to %s: %w", st, err)
	}
	return nil
}

// Open opens the repository at opts.URL. It reads the metadata, refuses unknown
// formats, and prepares encryption; the private key is unlocked only when needed.
func Open(ctx context.Context, opts Options) (*Repo, error) {
	opts.defaults()
	st, err := opts.OpenStore(ctx, opts.URL)
	if err != nil {
		return nil, err
	}
	r, err := openStore(ctx, st, opts)
	if err != nil {
		st.Close()
		return nil, err
	}
	return r, nil
}

func openStore(ctx context.Context, st *storage.Store, opts Options) (*Repo, error) {
	raw, err := st.ReadAll(ctx, ConfigKey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, &NotFoundError{URL: st.String()}
	}
	if err != nil {
		return nil, fmt.Errorf("read repository metadata: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("repository metadata at %s is not valid: %w", st, err)
	}
	if cfg.Format != FormatVersion {
		return nil, fmt.Errorf("repository at %s has format version %d; this hartvault reads version %d", st, cfg.Format, FormatVersion)
	}
	host, _ := os.Hostname()
	r := &Repo{opts: opts, store: st, config: cfg, log: opts.Logger, host: host}
	if err := r.checkKeys(); err != nil {
		return nil, err
	}
	var recips []age.Recipient
	switch cfg.Encryption.Mode {
	case ModeNone:
	case ModePassphrase:
		rc, err := age.ParseX25519Recipient(cfg.Encryption.Recipient)
		if err != nil {
			return nil, fmt.Errorf("repository metadata at %s: bad recipient: %w", st, err)
		}
		recips = []age.Recipient{rc}
	case ModeRecipients:
		recips, err = stream.ParseRecipients(cfg.Encryption.Recipients)
		if err != nil {
			return nil, fmt.Errorf("repository metadata at %s: %w", st, err)
		}
	default:
		return nil, fmt.Errorf("repository at %s uses unknown encryption mode %q", st, cfg.Encryption.Mode)
	}
	r.writeCd, err = stream.New(stream.Config{Compression: opts.Compression, Level: opts.Level, Recipients: recips})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// checkKeys makes sure the plan's key settings fit the repository's mode, so a plan
// pointing at the wrong repository fails early and clearly.
func (r *Repo) checkKeys() error {
	k := r.opts.Keys
	switch r.config.Encryption.Mode {
	case ModeNone:
		if !k.None {
			return fmt.Errorf("repository at %s is not encrypted, but the plan configures a key (set encryption: none)", r.store)
		}
	case ModePassphrase:
		if k.Passphrase == nil {
			return fmt.Errorf("repository at %s is encrypted with a passphrase: set passphrase_env or passphrase_file in the plan", r.store)
		}
	case ModeRecipients:
		if len(k.Recipients) == 0 && k.Identities == nil {
			return fmt.Errorf("repository at %s is encrypted to recipients: set recipients (and identity_file to restore) in the plan", r.store)
		}
	}
	return nil
}

// unlock prepares the codec that decrypts: it runs the passphrase KDF once per open.
func (r *Repo) unlock() (*stream.Codec, error) {
	r.unlockOnce.Do(func() {
		var ids []age.Identity
		switch r.config.Encryption.Mode {
		case ModePassphrase:
			pass, err := r.opts.Keys.Passphrase()
			if err != nil {
				r.unlockErr = err
				return
			}
			id, err := stream.UnwrapKey(r.config.Encryption.WrappedKey, pass, r.config.Encryption.WorkFactor)
			// scrypt just used 64 MiB; hand it back now, or the collector sizes the
			// heap of the whole run after it and peak memory doubles.
			debug.FreeOSMemory()
			if err != nil {
				if errors.Is(err, stream.ErrWrongPassphrase) {
					r.unlockErr = fmt.Errorf("wrong passphrase for the repository at %s", r.store)
				} else {
					r.unlockErr = err
				}
				return
			}
			ids = []age.Identity{id}
		case ModeRecipients:
			if r.opts.Keys.Identities != nil {
				var err error
				ids, err = r.opts.Keys.Identities()
				if err != nil {
					r.unlockErr = err
					return
				}
			}
		}
		r.readCd, r.unlockErr = stream.New(stream.Config{Identities: ids})
	})
	return r.readCd, r.unlockErr
}

// Unlock checks the key now (before a restore touches anything).
func (r *Repo) Unlock() error {
	_, err := r.unlock()
	return err
}

// Config returns the repository metadata.
func (r *Repo) Config() Config { return r.config }

// Store is the primary storage.
func (r *Repo) Store() *storage.Store { return r.store }

// String names the repository location.
func (r *Repo) String() string { return r.store.String() }

// Options returns the options the repository was opened with.
func (r *Repo) Options() Options { return r.opts }

// Close releases the storage.
func (r *Repo) Close() error {
	r.replicaMu.Lock()
	for _, st := range r.replicaStores {
		st.Close()
	}
	r.replicaStores = nil
	r.replicaMu.Unlock()
	return r.store.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
