package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/hartonomous/hartvault/internal/storage"
	"github.com/hartonomous/hartvault/internal/stream"
)

// Backup types.
const (
	TypeFull = "full"
	TypeDiff = "diff"
	TypeLog  = "log"
)

// ManifestFormat is the manifest schema version.
const ManifestFormat = 1

// Manifest describes one committed backup: every object it stored, with sizes and
// hashes of stored and plain bytes, and every file or stream it captured.
type Manifest struct {
	Format      int       `json:"format"`
	ID          string    `json:"id"`
	Repository  string    `json:"repository"`
	Source      string    `json:"source"`
	Kind        string    `json:"kind"`
	Type        string    `json:"type"`
	Tag         string    `json:"tag,omitempty"`
	Parent      string    `json:"parent,omitempty"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Host        string    `json:"host"`
	ToolVersion string    `json:"tool_version"`
	// Bytes is what was read from the source; StoredBytes what this backup's own
	// objects occupy in the repository.
	Bytes       int64           `json:"bytes"`
	StoredBytes int64           `json:"stored_bytes"`
	Objects     []Object        `json:"objects"`
	Files       []File          `json:"files,omitempty"`
	Engine      json.RawMessage `json:"engine,omitempty"`
}

// Object is one stored object (a pack volume) of a backup.
type Object struct {
	Key string `json:"key"`
	// Size and SHA256 of the stored bytes (what verify checks without any key).
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// PlainSize is the plaintext size; the plaintext is covered by the extents' hashes.
	PlainSize int64 `json:"plain_size"`
	stream.Encoding
}

// Entry types of a File.
const (
	TypeRegular = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// File is one captured file (or stream) with the extents that hold its content.
type File struct {
	Path    string      `json:"path"` // slash-separated, relative to the restore root
	Type    string      `json:"type"`
	Mode    fs.FileMode `json:"mode"`
	ModTime time.Time   `json:"mtime"`
	Size    int64       `json:"size"`
	// SHA256 of the whole content, when the engine computed it.
	SHA256  string   `json:"sha256,omitempty"`
	Link    string   `json:"link,omitempty"`
	Owner   *Owner   `json:"owner,omitempty"`
	Extents []Extent `json:"extents,omitempty"`
}

// Owner is a file's numeric owner on systems that have one.
type Owner struct {
	UID int `json:"uid"`
	GID int `json:"gid"`
}

// Extent is a run of a file's bytes stored contiguously in one object's plaintext.
type Extent struct {
	Offset int64 `json:"off"` // in the file
	Length int64 `json:"len"`
	// Backup holds the object; "" means the backup of the manifest itself.
	Backup string `json:"backup,omitempty"`
	Object int    `json:"obj"` // index into that backup's Objects
	At     int64  `json:"at"`  // offset in the object's plaintext
	SHA256 string `json:"sha256"`
	// Overlay extents are written after all others: a differential backup refers to
	// its full's extents for a file and overlays the pages that changed.
	Overlay bool `json:"overlay,omitempty"`
}

func manifestKey(source, id string) string { return "backups/" + source + "/" + id + ".manifest" }
func dataPrefix(source, id string) string  { return "data/" + source + "/" + id + "/" }
func volumeKey(source, id string, n int) string {
	return fmt.Sprintf("%s%06d.vol", dataPrefix(source, id), n)
}

// NewID makes a backup id that sorts by time and is unique within a source.
func NewID(t time.Time, typ string) string {
	return t.UTC().Format("20060102T150405Z") + "-" + typ + "-" + randomHex(2)
}

// metaCodec encodes manifests: encrypted when the repository has a passphrase (the
// key is at hand wherever manifests are read); in recipients mode manifests stay
// readable without the private key, so backup hosts can plan diffs and detect changes.
func (r *Repo) metaEncoding() bool { return r.config.Encryption.Mode == ModePassphrase }

func (r *Repo) encodeMeta(v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	cd := r.writeCd
	if !r.metaEncoding() {
		cd, err = stream.New(stream.Config{Compression: stream.CompressionZstd})
		if err != nil {
			return nil, err
		}
	}
	stored, _, _, err := cd.Encode(plain)
	return stored, err
}

var (
	ageMagic  = []byte("age-encryption.org/")
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

func (r *Repo) decodeMeta(key string, stored []byte, v any) error {
	var plain []byte
	var err error
	switch {
	case bytes.HasPrefix(stored, ageMagic):
		cd, uerr := r.unlock()
		if uerr != nil {
			return uerr
		}
		plain, err = cd.Decode(stored, stream.Encoding{Compression: stream.CompressionZstd, Encrypted: true}, stream.Expect{})
	case bytes.HasPrefix(stored, zstdMagic):
		var cd *stream.Codec
		cd, err = stream.New(stream.Config{})
		if err == nil {
			plain, err = cd.Decode(stored, stream.Encoding{Compression: stream.CompressionZstd}, stream.Expect{})
		}
	default:
		plain = stored
	}
	if err != nil {
		if errors.Is(err, stream.ErrNoKey) || strings.Contains(err.Error(), "does not match") {
			return fmt.Errorf("%s: %w", key, err)
		}
		return fmt.Errorf("%s in %s is damaged: %w", key, r.store, err)
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return fmt.Errorf("%s in %s is damaged: %w", key, r.store, err)
	}
	return nil
}

// Manifest reads one committed backup's manifest.
func (r *Repo) Manifest(ctx context.Context, source, id string) (*Manifest, error) {
	return r.readManifest(ctx, r.store, source, id)
}

func (r *Repo) readManifest(ctx context.Context, st *storage.Store, source, id string) (*Manifest, error) {
	key := manifestKey(source, id)
	raw, err := st.ReadAll(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", key, err)
	}
	var m Manifest
	if err := r.decodeMeta(key, raw, &m); err != nil {
		return nil, err
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("manifest %s has format %d; this hartvault reads %d", key, m.Format, ManifestFormat)
	}
	return &m, nil
}

// Backups returns the committed backups of source ("" for all sources), oldest first
// (by finish time, then id: never by name alone).
func (r *Repo) Backups(ctx context.Context, source string) ([]*Manifest, error) {
	return r.backupsIn(ctx, r.store, source)
}

func (r *Repo) backupsIn(ctx context.Context, st *storage.Store, source string) ([]*Manifest, error) {
	prefix := "backups/"
	if source != "" {
		prefix += source + "/"
	}
	var refs [][2]string
	err := st.List(ctx, prefix, func(o storage.ObjectInfo) error {
		src, id, ok := parseManifestKey(o.Key)
		if ok {
			refs = append(refs, [2]string{src, id})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list backups in %s: %w", st, err)
	}
	out := make([]*Manifest, 0, len(refs))
	for _, ref := range refs {
		m, err := r.readManifest(ctx, st, ref[0], ref[1])
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	SortManifests(out)
	return out, nil
}

// SortManifests orders backups oldest first.
func SortManifests(ms []*Manifest) {
	sort.SliceStable(ms, func(i, j int) bool {
		if !ms[i].Finished.Equal(ms[j].Finished) {
			return ms[i].Finished.Before(ms[j].Finished)
		}
		return ms[i].ID < ms[j].ID
	})
}

func parseManifestKey(key string) (source, id string, ok bool) {
	rest, found := strings.CutPrefix(key, "backups/")
	if !found || !strings.HasSuffix(rest, ".manifest") {
		return "", "", false
	}
	source, file := path.Split(rest)
	if source == "" {
		return "", "", false
	}
	return strings.TrimSuffix(source, "/"), strings.TrimSuffix(file, ".manifest"), true
}

// ErrNoBackup means no backup matched a selection.
var ErrNoBackup = errors.New("no matching backup")

// Find resolves a backup id or tag within a source's committed backups.
func Find(backups []*Manifest, idOrTag string) (*Manifest, error) {
	for _, m := range backups {
		if m.ID == idOrTag {
			return m, nil
		}
	}
	var tagged *Manifest
	for _, m := range backups {
		if m.Tag == idOrTag {
			tagged = m // newest wins if a tag was ever reused
		}
	}
	if tagged != nil {
		return tagged, nil
	}
	return nil, fmt.Errorf("%w: no backup with id or tag %q", ErrNoBackup, idOrTag)
}

// Latest returns the newest backup finished at or before t (any t when t is zero).
func Latest(backups []*Manifest, t time.Time) *Manifest {
	var best *Manifest
	for _, m := range backups {
		if t.IsZero() || !m.Finished.After(t) {
			best = m
		}
	}
	return best
}
