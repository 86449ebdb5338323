package mssql

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/hartonomous/hartvault/internal/engine/mssql/chain"
	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/storage"
	"github.com/hartonomous/hartvault/internal/stream"
)

// urlDest is mode url: SQL Server writes block blobs under the backup's data prefix in
// the repository's container, through a SAS credential named after the container;
// hartvault reads each blob back, hashes it and registers it as an object of the backup.
type urlDest struct {
	r         *repo.Repo
	container string // https://ACCOUNT.blob.core.windows.net/CONTAINER
	prefix    string // the repository URL's prefix= parameter
}

// containerOf finds the Azure container behind the repository.
func containerOf(r *repo.Repo) (*container.Client, string, error) {
	cloud, ok := r.Store().Driver().(*storage.Cloud)
	if !ok {
		return nil, "", fmt.Errorf("%w; this repository is at %s (use mode: stream)", errNotAzure, r)
	}
	var cc *container.Client
	if !cloud.Bucket().As(&cc) || cc == nil {
		return nil, "", fmt.Errorf("%w; this repository is at %s (use mode: stream)", errNotAzure, r)
	}
	prefix := ""
	if u, err := url.Parse(r.Options().URL); err == nil {
		prefix = u.Query().Get("prefix")
	}
	return cc, prefix, nil
}

// urlDestination prepares mode url: it finds the container, gets a SAS (from sas_env,
// or minted with the account key) and creates or rotates the credential. write asks
// for a SAS that can write (backup) rather than only read (restore).
func (e *Engine) urlDestination(ctx context.Context, r *repo.Repo, srv Server, write bool) (*urlDest, error) {
	cc, prefix, err := containerOf(r)
	if err != nil {
		return nil, e.errorf("%w", err)
	}
	cu := cc.URL()
	if i := strings.IndexAny(cu, "?#"); i >= 0 {
		cu = cu[:i]
	}
	cu = strings.TrimRight(cu, "/")
	token, err := e.sas(cc, write)
	if err != nil {
		return nil, err
	}
	sec, err := tsql.SASCredential(cu, token)
	if err != nil {
		return nil, e.errorf("%w", err)
	}
	if err := srv.Exec(ctx, sec.SQL, nil); err != nil {
		// The driver's error does not quote the statement; the SAS stays out of it.
		return nil, e.errorf("create the credential %s for BACKUP/RESTORE TO URL (%s): %w", cu, sec.Display, err)
	}
	return &urlDest{r: r, container: cu, prefix: prefix}, nil
}

// sas returns the SAS SQL Server uses: the one in sas_env, or one minted for the
// container with the account key the repository was opened with.
func (e *Engine) sas(cc *container.Client, write bool) (string, error) {
	if e.src.SASEnv != "" {
		v := e.opts.Getenv(e.src.SASEnv)
		if strings.TrimSpace(v) == "" {
			return "", e.errorf("environment variable %s (sas_env) is not set: it must hold a SAS token for the repository's container", e.src.SASEnv)
		}
		token, err := tsql.NormalizeSAS(v)
		if err != nil {
			return "", e.errorf("environment variable %s (sas_env): %w", e.src.SASEnv, err)
		}
		return token, nil
	}
	now := e.opts.Now().UTC()
	perms := sas.ContainerPermissions{Read: true, List: true}
	if write {
		perms.Write, perms.Delete, perms.Create, perms.Add = true, true, true, true
	}
	lifetime := e.src.SASLifetime.Std()
	if lifetime <= 0 {
		lifetime = 24 * time.Hour
	}
	start := now.Add(-5 * time.Minute) // server clocks drift
	signed, err := cc.GetSASURL(perms, now.Add(lifetime), &container.GetSASURLOptions{StartTime: &start})
	if err != nil {
		if errors.Is(err, bloberror.MissingSharedKeyCredential) {
			return "", e.errorf("mode url needs a SAS for SQL Server: set sas_env to a variable holding one, or give the repository an account key (AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, or a connection string with AccountKey) so hartvault can mint it")
		}
		return "", e.errorf("mint a SAS for the repository's container: %w", err)
	}
	u, err := url.Parse(signed)
	if err != nil {
		return "", e.errorf("mint a SAS for the repository's container: unexpected URL")
	}
	return u.RawQuery, nil
}

func (u *urlDest) weight() int64 { return 2 }

// blobURL is the URL of a repository key.
func (u *urlDest) blobURL(key string) string {
	segs := strings.Split(u.prefix+key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return u.container + "/" + strings.Join(segs, "/")
}

func (u *urlDest) devices(b *repo.Backup, db, typ string, size int64) (tsql.Devices, []string, tsql.Layout, error) {
	layout, err := tsql.URLLayout(size)
	if err != nil {
		return tsql.Devices{}, nil, layout, err
	}
	names := tsql.BackupFileNames(db, typ, layout.Stripes)
	urls := make([]string, len(names))
	paths := make([]string, len(names))
	for i, n := range names {
		urls[i] = u.blobURL(b.DataPrefix() + n)
		paths[i] = tsql.FileToken(db) + "/" + n
	}
	return tsql.ToURL(urls...), paths, layout, nil
}

// keyOf maps a blob URL SQL Server wrote back to its repository key.
func (u *urlDest) keyOf(blobURL string) (string, error) {
	rest, ok := strings.CutPrefix(blobURL, u.container+"/")
	if !ok {
		return "", fmt.Errorf("blob %s is not in the repository's container %s", blobURL, u.container)
	}
	key, err := url.PathUnescape(rest)
	if err != nil {
		return "", err
	}
	key, ok = strings.CutPrefix(key, u.prefix)
	if !ok {
		return "", fmt.Errorf("blob %s is outside the repository's prefix %q", blobURL, u.prefix)
	}
	return key, nil
}

// store reads each blob back, hashes it and registers it as an object. The bytes are
// SQL Server's own (compressed and encrypted by its options), not hartvault's.
func (u *urlDest) store(ctx context.Context, run *backupRun, devs tsql.Devices, paths []string, rec *chain.Record) error {
	for i, dev := range devs.Paths {
		key, err := u.keyOf(dev)
		if err != nil {
			return err
		}
		size, sum, err := hashObject(ctx, u.r, key)
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("SQL Server reported the backup done, but blob %s is not in the repository", key)
		}
		if err != nil {
			return fmt.Errorf("read back blob %s: %w", key, err)
		}
		run.progress.Add(run.size / int64(len(devs.Paths)))
		n := run.b.AddObject(repo.Object{Key: key, Size: size, SHA256: sum, PlainSize: size,
			Encoding: stream.Encoding{Compression: stream.CompressionNone, Encrypted: false}})
		run.b.AddBytes(size)
		run.b.AddFile(repo.File{Path: paths[i], Type: repo.TypeRegular, Mode: 0o640, ModTime: rec.Finish.UTC(), Size: size, SHA256: sum,
			Extents: []repo.Extent{{Offset: 0, Length: size, Object: n, At: 0, SHA256: sum}}})
	}
	return nil
}

// cleanup leaves the blobs: they are under the backup's data prefix, which an aborted
// backup removes and a committed one keeps.
func (u *urlDest) cleanup(tsql.Devices) {}
