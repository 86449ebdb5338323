package mssql

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/testutil/azurite"
)

// Mode url against Azurite: the fake server writes the backup blobs itself through the
// SAS credential hartvault created, hartvault reads them back, hashes and registers
// them; restores read them from their URLs.
func TestURLMode(t *testing.T) {
	az := azurite.Start(t)
	az.Setenv(t)
	containerURL := az.Container(t, t.Name())
	replica := "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "replica"))
	te := newTestEnvAt(t, containerURL, func(s *plan.Source) {
		s.Mode, s.StagingDir, s.LocalStagingDir, s.SASLifetime = plan.MSSQLModeURL, "", "", plan.Duration(6*time.Hour)
	}, func(o *repo.Options) { o.Replicas = []string{replica} })
	te.clock.t = time.Now()                                    // Azurite checks the SAS against its own clock
	te.fake.addDB("Hartonomous", "FULL").dataBytes = 400 << 30 // needs 3 blobs
	m, info := te.mustBackup("full")
	db := info.Databases[0]
	if len(db.URLs) != 3 || len(m.Objects) != 3 || len(m.Files) != 3 {
		t.Fatalf("stripes: urls %v, %d objects", db.URLs, len(m.Objects))
	}
	name := strings.TrimPrefix(containerURL, "azblob://")
	wantURL := az.BlobEndpoint() + "/" + name + "/data/" + te.src.Name + "/" + m.ID + "/Hartonomous.full.01of03.bak"
	if db.URLs[0] != wantURL || !strings.Contains(db.Statement, "TO URL = N'"+wantURL+"', URL = ") ||
		!strings.Contains(db.Statement, "MAXTRANSFERSIZE = 4194304, BLOCKSIZE = 65536") {
		t.Errorf("url %s\nstatement %s", db.URLs[0], db.Statement)
	}
	for i, o := range m.Objects {
		if o.Encrypted || o.Compression != "none" || o.Key != "data/"+te.src.Name+"/"+m.ID+"/"+strings.TrimPrefix(m.Files[i].Path, "Hartonomous/") {
			t.Errorf("object %+v", o)
		}
		sum := sha256.Sum256(te.fake.written[db.URLs[i]])
		if o.SHA256 != hex.EncodeToString(sum[:]) || o.Size != int64(len(te.fake.written[db.URLs[i]])) {
			t.Errorf("object %d is not what the server wrote", i)
		}
	}
	var damaged int
	if err := te.repo.VerifyObjects(te.ctx, nil, m, func(r repo.ObjectResult) {
		if r.Err != nil {
			damaged++
		}
	}); err != nil || damaged != 0 {
		t.Errorf("verify: %v, %d damaged", err, damaged)
	}

	// The credential: named after the container, holding a SAS that expires as planned.
	credName := az.BlobEndpoint() + "/" + name
	secret := te.fake.creds[credName]
	q, err := url.ParseQuery(secret)
	if err != nil || q.Get("sig") == "" || !strings.Contains(q.Get("sp"), "w") {
		t.Fatalf("credential %s: %q", credName, secret)
	}
	if se, _ := time.Parse(time.RFC3339, q.Get("se")); !se.Equal(te.clock.Now().UTC().Truncate(time.Second).Add(6*time.Hour)) && se.Sub(te.clock.Now()) > 7*time.Hour {
		t.Errorf("SAS expiry %s", q.Get("se"))
	}
	if strings.Contains(te.logs.String(), q.Get("sig")) || strings.Contains(te.logs.String(), "sig=") {
		t.Error("the SAS reached the log")
	}

	te.fake.work(4*time.Second, 40) // the SAS is checked against Azurite's real clock
	te.mustBackup("log")
	wantRows := te.fake.db("Hartonomous").rows
	p, err := te.restore(engine.RestoreRequest{As: "FromURL", To: engine.Target{Latest: true}})
	if err != nil {
		t.Fatal(err)
	}
	steps := strings.Join(p.Steps, "\n")
	if !strings.Contains(steps, "CREATE CREDENTIAL ["+credName+"] WITH IDENTITY = N'SHARED ACCESS SIGNATURE', SECRET = N'<redacted>';") || strings.Contains(steps, "sig=") {
		t.Errorf("steps:\n%s", steps)
	}
	if !strings.Contains(steps, "RESTORE DATABASE [FromURL] FROM URL = N'"+wantURL+"', URL = ") {
		t.Errorf("steps:\n%s", steps)
	}
	// Restoring needs only read and list.
	if q, _ := url.ParseQuery(te.fake.creds[credName]); q.Get("sp") != "rl" {
		t.Errorf("restore SAS permissions %q", q.Get("sp"))
	}
	if got := te.fake.db("FromURL"); got == nil || got.rows != wantRows {
		t.Errorf("restored %+v, want %d rows", got, wantRows)
	}

	// Disaster recovery: the replica on local disk is a repository of its own; SQL
	// Server cannot read it, so the url-mode backups are staged from it.
	ropts := te.repo.Options()
	ropts.URL, ropts.Replicas = replica, nil
	rr, err := repo.Open(te.ctx, ropts)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	staging := t.TempDir()
	drSrc := te.src
	drSrc.StagingDir, drSrc.LocalStagingDir = staging, staging
	dr := New(drSrc, Options{Connect: te.fake.connector(testDSN), Getenv: func(k string) string { return te.env[k] }, Now: te.clock.Now})
	req := engine.RestoreRequest{Repo: rr, As: "FromReplica", To: engine.Target{Latest: true}}
	p, err = dr.PlanRestore(te.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if steps := strings.Join(p.Steps, "\n"); !strings.Contains(steps, "RESTORE DATABASE [FromReplica] FROM DISK = N'"+filepath.Join(staging, "hartvault-restore-")) || strings.Contains(steps, "CREDENTIAL") {
		t.Errorf("steps:\n%s", steps)
	}
	if err := dr.Restore(te.ctx, req, p); err != nil {
		t.Fatal(err)
	}
	if got := te.fake.db("FromReplica"); got == nil || got.rows != wantRows {
		t.Errorf("restored from the replica: %+v", got)
	}
	stagingEmpty(t, staging)
	drSrc.StagingDir, drSrc.LocalStagingDir = "", ""
	req.As = "FromReplica2"
	if _, err := New(drSrc, Options{Connect: te.fake.connector(testDSN), Getenv: func(k string) string { return te.env[k] }, Now: te.clock.Now}).PlanRestore(te.ctx, req); err == nil ||
		!strings.Contains(err.Error(), "which is not this repository's container: restoring it from this copy needs staging_dir") {
		t.Errorf("replica without staging: %v", err)
	}

	// A SAS given in sas_env is used as it is.
	given := mintSAS(t, az.ConnectionString(), name)
	te.src.SASEnv = "HV_SAS"
	te.env["HV_SAS"] = "?" + given
	te.mustBackup("full")
	if te.fake.creds[credName] != given {
		t.Errorf("credential %q, want the SAS of sas_env", te.fake.creds[credName])
	}
	delete(te.env, "HV_SAS")
	if _, err := te.backup("full"); err == nil || !strings.Contains(err.Error(), "environment variable HV_SAS (sas_env) is not set") {
		t.Errorf("sas_env unset: %v", err)
	}
	te.env["HV_SAS"] = "not a sas"
	if _, err := te.backup("full"); err == nil || !strings.Contains(err.Error(), "does not look like one") || strings.Contains(err.Error(), "not a sas") {
		t.Errorf("bad sas: %v", err)
	}
}

func mintSAS(t *testing.T, conn, container string) string {
	t.Helper()
	c, err := service.NewClientFromConnectionString(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.NewContainerClient(container).GetSASURL(sas.ContainerPermissions{Read: true, Write: true, Delete: true, List: true, Create: true, Add: true}, time.Now().Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	return pu.RawQuery
}

func TestURLModeNeedsAzure(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, func(s *plan.Source) { s.Mode = plan.MSSQLModeURL })
	te.fake.addDB("Hartonomous", "FULL")
	_, err := te.backup("full")
	if err == nil || !strings.Contains(err.Error(), "mode url needs an azblob:// repository") {
		t.Errorf("err %v", err)
	}
	_ = context.Background()
}
