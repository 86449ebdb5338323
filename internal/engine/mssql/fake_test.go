package mssql

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"

	"github.com/hartonomous/hartvault/internal/engine/mssql/chain"
	"github.com/hartonomous/hartvault/internal/engine/mssql/clr"
	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
)

// clock is the time shared by the engine, the repository and the fake server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeServer plays SQL Server for the engine's tests. It keeps databases whose log
// grows with simulated activity, writes backup files (to disk, or to Azure through the
// SAS credential the engine created), keeps msdb history, and checks every RESTORE the
// way SQL Server does: the bytes must be a backup it wrote (so they survived the trip
// through the repository), LSNs must chain, and a point-in-time restore yields the row
// count the database had at that time.
type fakeServer struct {
	t     testing.TB
	clock *clock
	zone  *time.Location
	// toLocal maps a path on the server to this machine (staging directories).
	toLocal func(string) string

	mu        sync.Mutex
	edition   int
	dbs       map[string]*fakeDB
	history   []chain.Record
	setID     int64
	guids     int
	guidBase  int // another server's GUIDs differ: newGUID counts from here
	creds     map[string]string
	execs     []string // statements as run (credentials redacted by the test when shown)
	reads     []string // FILELISTONLY and HEADERONLY statements answered
	server    string   // its name ("" is FAKESQL)
	fail      map[string]error
	clr       map[string]clr.Export
	applied   map[string][]string // ExecIn batches by database
	connects  int
	dsn       string
	stats     []int // progress percentages reported
	written   map[string][]byte
	lastTimes map[string]time.Time
}

type fakeDB struct {
	name, state, model, access string
	guid, fork                 string
	lsn                        *big.Int
	archive                    chain.LSN // last_log_backup_lsn
	diffBase                   string
	fullCkpt                   chain.LSN
	rows                       int
	points                     []point // rows by time, for STOPAT
	files                      []tsql.DatabaseFile
	dataBytes                  int64
	// restore state
	restoring *restoreState
}

type point struct {
	T    time.Time `json:"t"`
	Rows int       `json:"rows"`
}

type restoreState struct {
	from      string // source database name
	redo      chain.LSN
	ckpt      chain.LSN // of the full restored
	rows      int
	stoppedAt time.Time
	done      bool
}

// header starts every backup set the fake writes on a device. Like a real backup's
// header it describes the set on its own (Rec: LSNs, GUIDs, times), so a file can be
// restored on another server, or read with RESTORE HEADERONLY when msdb lacks it. A
// file another tool appended to holds several sets, one after the other.
type header struct {
	Set     int64               `json:"set"`
	DB      string              `json:"db"`
	Type    string              `json:"type"`
	Stripe  int                 `json:"stripe"`
	Stripes int                 `json:"stripes"`
	Rows    int                 `json:"rows"`
	Points  []point             `json:"points,omitempty"`
	Files   []tsql.DatabaseFile `json:"files"`
	Seed    uint64              `json:"seed"`
	Size    int                 `json:"size"`
	Rec     chain.Record        `json:"rec"`
}

func newFakeServer(t testing.TB, c *clock) *fakeServer {
	return &fakeServer{t: t, clock: c, zone: time.FixedZone("", 3600), toLocal: func(s string) string { return s },
		edition: 3, dbs: map[string]*fakeDB{}, creds: map[string]string{}, fail: map[string]error{}, clr: map[string]clr.Export{},
		applied: map[string][]string{}, written: map[string][]byte{}}
}

func (f *fakeServer) connector(dsn string) Connector {
	return func(ctx context.Context, got string) (Server, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if got != dsn {
			return nil, errors.New("login failed")
		}
		f.connects++
		return f, nil
	}
}

func (f *fakeServer) newGUID() string {
	f.guids++
	n := f.guidBase + f.guids
	return fmt.Sprintf("%08X-0000-4000-8000-%012X", n, n)
}

// addDB creates an ONLINE database in FULL recovery with no backup yet.
func (f *fakeServer) addDB(name, model string) *fakeDB {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := &fakeDB{name: name, state: "ONLINE", model: model, access: "MULTI_USER", guid: f.newGUID(), fork: f.newGUID(),
		lsn: big.NewInt(34_000_000_012_300_001), rows: 100,
		files: []tsql.DatabaseFile{
			{LogicalName: name, PhysicalName: `/var/opt/mssql/data/` + name + `.mdf`, Type: "D", FileID: 1, Size: 8 << 20},
			{LogicalName: name + "_log", PhysicalName: `/var/opt/mssql/data/` + name + `_log.ldf`, Type: "L", FileID: 2, Size: 8 << 20},
		}}
	d.points = []point{{T: f.clock.Now(), Rows: d.rows}}
	f.dbs[strings.ToLower(name)] = d
	return d
}

// work simulates activity: time passes, the log grows, rows are inserted.
func (f *fakeServer) work(d time.Duration, rows int) {
	step := d / 4
	for i := 0; i < 4; i++ {
		f.clock.advance(step)
		f.mu.Lock()
		for _, db := range f.dbs {
			if db.state != "ONLINE" {
				continue
			}
			db.lsn.Add(db.lsn, big.NewInt(int64(step/time.Second)*1000+7))
			db.rows += rows / 4
			db.points = append(db.points, point{T: f.clock.Now(), Rows: db.rows})
		}
		f.mu.Unlock()
	}
}

func (f *fakeServer) name() string {
	if f.server == "" {
		return "FAKESQL"
	}
	return f.server
}

func (f *fakeServer) db(name string) *fakeDB {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dbs[strings.ToLower(name)]
}

func (f *fakeServer) failWhen(substr string, err error) {
	f.mu.Lock()
	f.fail[substr] = err
	f.mu.Unlock()
}

func (f *fakeServer) statements() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.execs...)
}

func (f *fakeServer) Close() error { return nil }

func (f *fakeServer) Info(ctx context.Context) (ServerInfo, error) {
	return ServerInfo{Name: f.name(), Version: "16.0.4135.4", Edition: map[int]string{3: "Enterprise Edition", 4: "Express Edition"}[f.edition],
		EngineEdition: f.edition, UTCOffset: time.Hour}, nil
}

func (f *fakeServer) Database(ctx context.Context, name string) (DatabaseInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.dbs[strings.ToLower(name)]
	if d == nil {
		return DatabaseInfo{Name: name}, nil
	}
	l, _ := chain.LSNFromBig(d.lsn)
	_ = l
	return DatabaseInfo{Name: d.name, Exists: true, State: d.state, RecoveryModel: d.model, UserAccess: d.access, DatabaseGUID: d.guid,
		LastLogBackupLSN: d.archive, DiffBaseGUID: d.diffBase, DiffBaseLSN: d.fullCkpt, DataBytes: max(d.dataBytes, 64<<20), LogBytes: 16 << 20}, nil
}

func (f *fakeServer) History(ctx context.Context, q HistoryQuery) ([]chain.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []chain.Record
	for _, r := range f.history {
		if !strings.EqualFold(r.Database, q.Database) || r.BackupSetID <= q.AfterSetID {
			continue
		}
		if q.Device != "" && !contains(r.Devices, q.Device) {
			continue
		}
		if !q.Since.IsZero() && r.Finish.Before(q.Since) && !(q.NewestOfType && f.newestOfType(r)) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// newestOfType reports whether r is the newest backup of its type of its database.
func (f *fakeServer) newestOfType(r chain.Record) bool {
	for _, o := range f.history {
		if strings.EqualFold(o.Database, r.Database) && o.Type == r.Type && o.BackupSetID > r.BackupSetID {
			return false
		}
	}
	return true
}

// HeaderOnly answers RESTORE HEADERONLY from the headers the fake writes: like SQL
// Server's, its times are the server's wall clock without a zone.
func (f *fakeServer) HeaderOnly(ctx context.Context, from tsql.Devices) ([]BackupHeader, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	stmt, err := tsql.HeaderOnly(from)
	if err != nil {
		return nil, err
	}
	if err := f.failing(stmt); err != nil {
		return nil, err
	}
	f.reads = append(f.reads, stmt)
	sets, err := f.readSets(ctx, from.Medium, from.Paths[0])
	if err != nil {
		return nil, fmt.Errorf("mssql: Cannot open backup device '%s'. Operating system error 2(The system cannot find the file specified.). (3201)", from.Paths[0])
	}
	out := make([]BackupHeader, len(sets))
	for i, h := range sets {
		r := h.Rec
		r.Devices, r.Ref = nil, ""
		r.Start = wallIn(r.Start, time.UTC)
		r.Finish = wallIn(r.Finish, time.UTC)
		out[i] = BackupHeader{Position: i + 1, Record: r}
	}
	return out, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func (f *fakeServer) CLR(ctx context.Context, database string) (clr.Export, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	x, ok := f.clr[strings.ToLower(database)]
	if !ok {
		return clr.Export{Database: database}, nil
	}
	return x, nil
}

func (f *fakeServer) ExecIn(ctx context.Context, database string, batches []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failing(strings.Join(batches, "\n")); err != nil {
		return err
	}
	f.applied[database] = append(f.applied[database], batches...)
	return nil
}

func (f *fakeServer) failing(stmt string) error {
	for s, err := range f.fail {
		if strings.Contains(stmt, s) {
			return err
		}
	}
	return nil
}

var (
	deviceRE = regexp.MustCompile(`(URL|DISK) = N'((?:[^']|'')*)'`)
	nameRE   = regexp.MustCompile(`^(?:BACKUP|RESTORE) (?:DATABASE|LOG) \[((?:[^\]]|\]\])*)\]`)
	descRE   = regexp.MustCompile(`DESCRIPTION = N'((?:[^']|'')*)'`)
	fileRE   = regexp.MustCompile(` WITH FILE = (\d+)`)
	stopRE   = regexp.MustCompile(`STOPAT = N'([^']*)'`)
	moveRE   = regexp.MustCompile(`MOVE N'((?:[^']|'')*)' TO N'((?:[^']|'')*)'`)
	credRE   = regexp.MustCompile(`CREATE CREDENTIAL \[((?:[^\]]|\]\])*)\] WITH IDENTITY = N'SHARED ACCESS SIGNATURE', SECRET = N'((?:[^']|'')*)';$`)
	alterRE  = regexp.MustCompile(`^ALTER DATABASE \[((?:[^\]]|\]\])*)\] SET (.*);$`)
)

func unq(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "''", "'"), "]]", "]") }

func devicesOf(stmt string) tsql.Devices {
	var d tsql.Devices
	for _, m := range deviceRE.FindAllStringSubmatch(stmt, -1) {
		d.Medium = tsql.Medium(m[1])
		d.Paths = append(d.Paths, unq(m[2]))
	}
	return d
}

func hasOpt(stmt, opt string) bool {
	_, with, _ := strings.Cut(stmt, " WITH ")
	for _, o := range strings.Split(strings.TrimSuffix(with, ";"), ", ") {
		if o == opt {
			return true
		}
	}
	return false
}

func (f *fakeServer) Exec(ctx context.Context, stmt string, progress func(int)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs = append(f.execs, stmt)
	if err := f.failing(stmt); err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(stmt, "IF EXISTS (SELECT 1 FROM sys.credentials"):
		m := credRE.FindStringSubmatch(stmt)
		if m == nil {
			return fmt.Errorf("fake: cannot read credential statement")
		}
		f.creds[unq(m[1])] = unq(m[2])
		return nil
	case strings.HasPrefix(stmt, "BACKUP "):
		return f.backup(ctx, stmt, progress)
	case strings.HasPrefix(stmt, "RESTORE VERIFYONLY "):
		for i, p := range devicesOf(stmt).Paths {
			h, err := f.read(ctx, devicesOf(stmt).Medium, p, positionOf(stmt))
			if err != nil {
				return fmt.Errorf("mssql: Cannot open backup device '%s'. (3201)", p)
			}
			if h.Stripe != i+1 {
				return fmt.Errorf("fake: stripe order")
			}
		}
		return nil
	case strings.HasPrefix(stmt, "RESTORE DATABASE ") && strings.HasSuffix(stmt, "] WITH RECOVERY;"):
		name := unq(nameRE.FindStringSubmatch(stmt)[1])
		return f.recover(name)
	case strings.HasPrefix(stmt, "RESTORE "):
		return f.restore(ctx, stmt, progress)
	case alterRE.MatchString(stmt):
		m := alterRE.FindStringSubmatch(stmt)
		d := f.dbs[strings.ToLower(unq(m[1]))]
		if d == nil {
			return fmt.Errorf("mssql: database '%s' does not exist (5011)", unq(m[1]))
		}
		switch m[2] {
		case "RECOVERY FULL":
			if d.model == "SIMPLE" {
				d.archive = chain.LSN{} // the log chain starts with the next full
			}
			d.model = "FULL"
		case "SINGLE_USER WITH ROLLBACK IMMEDIATE":
			d.access = "SINGLE_USER"
		case "MULTI_USER":
			d.access = "MULTI_USER"
		default:
			return fmt.Errorf("fake: unknown ALTER DATABASE %s", m[2])
		}
		return nil
	}
	return fmt.Errorf("fake: unknown statement %s", stmt)
}

func (f *fakeServer) cur(d *fakeDB) chain.LSN {
	l, err := chain.LSNFromBig(d.lsn)
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

func (f *fakeServer) bump(d *fakeDB, n int64) { d.lsn.Add(d.lsn, big.NewInt(n)) }

func (f *fakeServer) backup(ctx context.Context, stmt string, progress func(int)) error {
	name := unq(nameRE.FindStringSubmatch(stmt)[1])
	d := f.dbs[strings.ToLower(name)]
	if d == nil {
		return fmt.Errorf("mssql: Database '%s' does not exist. (911)", name)
	}
	typ := chain.Full
	switch {
	case strings.HasPrefix(stmt, "BACKUP LOG "):
		typ = chain.Log
		if d.model == "SIMPLE" {
			return fmt.Errorf("mssql: The statement BACKUP LOG is not allowed while the recovery model is SIMPLE. (4208)")
		}
		if d.archive.IsZero() {
			return fmt.Errorf("mssql: BACKUP LOG cannot be performed because there is no current database backup. (4214)")
		}
	case hasOpt(stmt, "DIFFERENTIAL"):
		typ = chain.Diff
		if d.diffBase == "" {
			return fmt.Errorf("mssql: Cannot perform a differential backup for database, because a current database backup does not exist. (3035)")
		}
	}
	if f.edition == 4 && hasOpt(stmt, "COMPRESSION") {
		return fmt.Errorf("mssql: BACKUP DATABASE WITH COMPRESSION is not supported on Express Edition (64-bit). (1844)")
	}
	devs := devicesOf(stmt)
	copyOnly := hasOpt(stmt, "COPY_ONLY")
	f.setID++
	r := chain.Record{BackupSetID: f.setID, BackupSetGUID: f.newGUID(), Database: d.name, Type: typ, CopyOnly: copyOnly,
		DatabaseGUID: d.guid, FirstForkGUID: d.fork, LastForkGUID: d.fork, FamilyGUID: d.guid, RecoveryModel: d.model,
		ServerName: f.name(), Checksums: hasOpt(stmt, "CHECKSUM"), Devices: devs.Paths, DeviceType: 2}
	if devs.Medium == tsql.URL {
		r.DeviceType = 9
	}
	if m := descRE.FindStringSubmatch(stmt); m != nil {
		r.Description = unq(m[1])
	}
	r.Start = f.clock.Now().In(f.zone)
	switch typ {
	case chain.Log:
		r.FirstLSN = d.archive
		f.bump(d, 10)
		r.LastLSN = f.cur(d)
		if !copyOnly {
			d.archive = r.LastLSN
		}
		r.DatabaseBackupLSN = d.fullCkpt
	default:
		r.FirstLSN = f.cur(d)
		f.bump(d, 5)
		r.CheckpointLSN = f.cur(d)
		f.bump(d, 5)
		r.LastLSN = f.cur(d)
		r.DatabaseBackupLSN = d.fullCkpt
		if typ == chain.Diff {
			r.DifferentialBaseGUID, r.DifferentialBaseLSN = d.diffBase, d.fullCkpt
		}
		if typ == chain.Full && !copyOnly {
			d.fullCkpt, d.diffBase = r.CheckpointLSN, r.BackupSetGUID
			if d.archive.IsZero() && d.model != "SIMPLE" {
				d.archive = r.FirstLSN
			}
		}
	}
	f.clock.advance(time.Second)
	r.Finish = f.clock.Now().In(f.zone)
	size := map[chain.Type]int{chain.Full: 300 << 10, chain.Diff: 90 << 10, chain.Log: 40 << 10}[typ]
	r.Size, r.CompressedSize = int64(size), int64(size/3)
	pts := append([]point(nil), d.points...)
	// Without FORMAT or INIT a backup to an existing file is appended to it (NOINIT is
	// SQL Server's default): the file then holds several backup sets.
	appendTo := devs.Medium == tsql.Disk && !hasOpt(stmt, "FORMAT") && !hasOpt(stmt, "INIT")
	for i, p := range devs.Paths {
		h := header{Set: r.BackupSetID, DB: d.name, Type: string(typ), Stripe: i + 1, Stripes: len(devs.Paths), Rows: d.rows, Points: pts, Files: d.files,
			Seed: uint64(f.guidBase) + uint64(r.BackupSetID)*7 + uint64(i), Size: size / len(devs.Paths), Rec: r}
		data := encode(h)
		if old, err := os.ReadFile(f.toLocal(p)); err == nil && appendTo {
			data = append(old, data...)
		}
		if err := f.write(ctx, devs.Medium, p, data); err != nil {
			return err
		}
	}
	if hasOpt(stmt, "NORECOVERY") {
		d.state = "RESTORING"
	}
	f.history = append(f.history, r)
	if f.lastTimes == nil {
		f.lastTimes = map[string]time.Time{}
	}
	f.lastTimes[strings.ToLower(d.name)] = r.Finish
	stats := 100
	if i := strings.Index(stmt, "STATS = "); i >= 0 {
		fmt.Sscanf(stmt[i+len("STATS = "):], "%d", &stats)
	}
	for p := stats; p <= 100; p += stats {
		f.stats = append(f.stats, p)
		if progress != nil {
			progress(p)
		}
	}
	return nil
}

func encode(h header) []byte {
	j, _ := json.Marshal(h)
	var b bytes.Buffer
	b.WriteString("FAKEBAK\n")
	b.Write(j)
	b.WriteByte('\n')
	rng := rand.New(rand.NewPCG(h.Seed, 99))
	for i := 0; i < h.Size; i++ {
		b.WriteByte(byte(rng.IntN(7)))
	}
	return b.Bytes()
}

// decode reads the backup sets of a device, in position order.
func decode(data []byte) ([]header, error) {
	var out []header
	for len(data) > 0 {
		r := bufio.NewReader(bytes.NewReader(data))
		magic, err := r.ReadString('\n')
		if err != nil || magic != "FAKEBAK\n" {
			return nil, errors.New("not a backup")
		}
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		var h header
		if err := json.Unmarshal(line, &h); err != nil {
			return nil, err
		}
		n := len(magic) + len(line) + h.Size
		if n > len(data) || !bytes.Equal(encode(h), data[:n]) {
			return nil, errors.New("the backup's bytes are damaged")
		}
		out = append(out, h)
		data = data[n:]
	}
	if len(out) == 0 {
		return nil, errors.New("not a backup")
	}
	return out, nil
}

// sasFor finds the credential SQL Server would use for a URL: named after the
// container URL, the longest prefix.
func (f *fakeServer) sasFor(u string) (string, error) {
	best := ""
	for name := range f.creds {
		if strings.HasPrefix(u, name+"/") && len(name) > len(best) {
			best = name
		}
	}
	if best == "" {
		return "", fmt.Errorf("mssql: Cannot open backup device '%s'. Operating system error 50(The request is not supported.). (3201)", u)
	}
	return f.creds[best], nil
}

func (f *fakeServer) write(ctx context.Context, medium tsql.Medium, p string, data []byte) error {
	f.written[p] = data
	if medium == tsql.Disk {
		if err := os.WriteFile(f.toLocal(p), data, 0o640); err != nil {
			return fmt.Errorf("mssql: Cannot open backup device '%s'. Operating system error 3. (3201)", p)
		}
		return nil
	}
	sas, err := f.sasFor(p)
	if err != nil {
		return err
	}
	c, err := blockblob.NewClientWithNoCredential(p+"?"+sas, nil)
	if err != nil {
		return err
	}
	if _, err := c.UploadBuffer(ctx, data, nil); err != nil {
		return fmt.Errorf("mssql: Write on '%s' failed: %v (3202)", p, err)
	}
	return nil
}

// read returns the backup set at position (0 is 1) on a device.
func (f *fakeServer) read(ctx context.Context, medium tsql.Medium, p string, position int) (header, error) {
	sets, err := f.readSets(ctx, medium, p)
	if err != nil {
		return header{}, err
	}
	position = max(position, 1)
	if position > len(sets) {
		return header{}, fmt.Errorf("mssql: The backup set at position %d on device '%s' does not exist (only %d). (3239)", position, p, len(sets))
	}
	return sets[position-1], nil
}

// readSets returns every backup set on a device, in position order.
func (f *fakeServer) readSets(ctx context.Context, medium tsql.Medium, p string) ([]header, error) {
	var data []byte
	var err error
	if medium == tsql.Disk {
		data, err = os.ReadFile(f.toLocal(p))
	} else {
		var sas string
		if sas, err = f.sasFor(p); err == nil {
			var c *blob.Client
			if c, err = blob.NewClientWithNoCredential(p+"?"+sas, nil); err == nil {
				var resp blob.DownloadStreamResponse
				if resp, err = c.DownloadStream(ctx, nil); err == nil {
					data, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return decode(data)
}

// positionOf reads the FILE = n of a statement (1 without one).
func positionOf(stmt string) int {
	if m := fileRE.FindStringSubmatch(stmt); m != nil {
		var n int
		fmt.Sscanf(m[1], "%d", &n)
		return n
	}
	return 1
}

func (f *fakeServer) FileList(ctx context.Context, from tsql.Devices) ([]tsql.DatabaseFile, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	stmt, err := tsql.FileListOnly(from)
	if err != nil {
		return nil, err
	}
	f.reads = append(f.reads, stmt)
	h, err := f.read(ctx, from.Medium, from.Paths[0], from.Position)
	if err != nil {
		return nil, fmt.Errorf("mssql: Cannot open backup device '%s': %v (3201)", from.Paths[0], err)
	}
	return h.Files, nil
}

func (f *fakeServer) restore(ctx context.Context, stmt string, progress func(int)) error {
	name := unq(nameRE.FindStringSubmatch(stmt)[1])
	devs := devicesOf(stmt)
	var h header
	stripes := map[int]bool{}
	for i, p := range devs.Paths {
		hi, err := f.read(ctx, devs.Medium, p, positionOf(stmt))
		if err != nil {
			return fmt.Errorf("mssql: Cannot open backup device '%s': %v (3201)", p, err)
		}
		if i == 0 {
			h = hi
		} else if hi.Set != h.Set || !strings.EqualFold(hi.Rec.BackupSetGUID, h.Rec.BackupSetGUID) {
			return fmt.Errorf("mssql: The volume on device '%s' is not a member of the media family. (3231)", p)
		}
		stripes[hi.Stripe] = true // in any order, as SQL Server reads them
	}
	if len(stripes) != h.Stripes {
		return fmt.Errorf("mssql: The media set has %d media families but only %d are provided. All members must be provided. (3132)", h.Stripes, len(stripes))
	}
	// The backup's own header says what it is: a file from another server restores too.
	rec := &h.Rec
	if hasOpt(stmt, "CHECKSUM") && !rec.Checksums {
		return errors.New("mssql: RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information. (3187)")
	}
	d := f.dbs[strings.ToLower(name)]
	isLog := strings.HasPrefix(stmt, "RESTORE LOG ")
	switch {
	case !isLog && rec.Type == chain.Full:
		if d != nil && d.restoring == nil && d.state != "RESTORING" && !hasOpt(stmt, "REPLACE") {
			return fmt.Errorf("mssql: The tail of the log for the database \"%s\" has not been backed up. (3159)", name)
		}
		if d != nil && d.state == "ONLINE" && d.access != "SINGLE_USER" {
			return fmt.Errorf("mssql: Exclusive access could not be obtained because the database is in use. (3101)")
		}
		if !strings.EqualFold(name, h.DB) {
			moved := map[string]bool{}
			for _, m := range moveRE.FindAllStringSubmatch(stmt, -1) {
				moved[unq(m[1])] = true
				for _, other := range f.dbs {
					for _, of := range other.files {
						if strings.EqualFold(of.PhysicalName, unq(m[2])) && other != d {
							return fmt.Errorf("mssql: The file '%s' cannot be overwritten. It is being used by database '%s'. (1834)", unq(m[2]), other.name)
						}
					}
				}
			}
			for _, file := range h.Files {
				if !moved[file.LogicalName] {
					return fmt.Errorf("mssql: The file '%s' cannot be overwritten. It is being used by database '%s'. (1834)", file.PhysicalName, h.DB)
				}
			}
		}
		src := f.dbs[strings.ToLower(h.DB)]
		nd := &fakeDB{name: name, state: "RESTORING", model: rec.RecoveryModel, access: "MULTI_USER", guid: rec.DatabaseGUID, fork: rec.LastForkGUID,
			lsn: rec.LastLSN.Big(), rows: h.Rows}
		nd.files = append([]tsql.DatabaseFile(nil), h.Files...)
		for i, m := range moveRE.FindAllStringSubmatch(stmt, -1) {
			if i < len(nd.files) {
				nd.files[i].PhysicalName = unq(m[2])
			}
		}
		_ = src
		nd.restoring = &restoreState{from: h.DB, redo: rec.LastLSN, ckpt: rec.CheckpointLSN, rows: h.Rows}
		f.dbs[strings.ToLower(name)] = nd
	case !isLog && rec.Type == chain.Diff:
		if d == nil || d.restoring == nil {
			return errors.New("mssql: The database cannot be restored because it is not in the restoring state. (3117)")
		}
		if rec.DatabaseBackupLSN.Cmp(d.restoring.ckpt) != 0 {
			return errors.New("mssql: This differential backup cannot be restored because the database has not been restored to the correct earlier state. (3136)")
		}
		moved := map[string]bool{}
		for _, m := range moveRE.FindAllStringSubmatch(stmt, -1) {
			moved[unq(m[1])] = true
		}
		for _, file := range h.Files {
			known := false
			for _, have := range d.files {
				known = known || have.LogicalName == file.LogicalName
			}
			switch {
			case known && moved[file.LogicalName]:
				return fmt.Errorf("fake: MOVE of %s, which the full already placed", file.LogicalName)
			case !known && !strings.EqualFold(name, h.DB) && !moved[file.LogicalName]:
				return fmt.Errorf("mssql: The file '%s' cannot be overwritten. It is being used by database '%s'. (1834)", file.PhysicalName, h.DB)
			case !known:
				d.files = append(d.files, file)
			}
		}
		d.restoring.redo, d.restoring.rows = rec.LastLSN, h.Rows
	case isLog && rec.Type == chain.Log:
		if d == nil || d.restoring == nil {
			return errors.New("mssql: The log or differential backup cannot be restored because no files are ready to rollforward. (4306)")
		}
		rs := d.restoring
		if rs.done {
			return errors.New("mssql: The STOPAT point has been reached: no further log can be restored. (4338)")
		}
		if rec.FirstLSN.Cmp(rs.redo) > 0 {
			return fmt.Errorf("mssql: The log in this backup set begins at LSN %s, which is too recent to apply to the database. An earlier log backup that includes LSN %s can be restored. (4305)", rec.FirstLSN, rs.redo)
		}
		if rec.LastLSN.Cmp(rs.redo) <= 0 {
			return fmt.Errorf("mssql: The log in this backup set terminates at LSN %s, which is too early to apply to the database. (4326)", rec.LastLSN)
		}
		rs.redo, rs.rows = rec.LastLSN, h.Rows
		if m := stopRE.FindStringSubmatch(stmt); m != nil {
			stop, err := time.ParseInLocation(tsql.StopAtLayout, m[1], f.zone)
			if err != nil {
				return fmt.Errorf("fake: STOPAT %q: %v", m[1], err)
			}
			if stop.Before(rec.Finish) {
				rows := -1
				for _, p := range h.Points {
					if !p.T.After(stop) {
						rows = p.Rows
					}
				}
				if rows < 0 {
					return errors.New("mssql: This backup set contains records that were logged before the designated point in time. (4335)")
				}
				rs.rows, rs.stoppedAt, rs.done = rows, stop, true
			}
		}
	default:
		return fmt.Errorf("fake: %s of a %s backup", stmt[:12], rec.Type)
	}
	for p := 10; p <= 100; p += 10 {
		if progress != nil {
			progress(p)
		}
	}
	if hasOpt(stmt, "RECOVERY") {
		return f.recover(name)
	}
	return nil
}

func (f *fakeServer) recover(name string) error {
	d := f.dbs[strings.ToLower(name)]
	if d == nil || d.restoring == nil {
		if d != nil && d.state == "RESTORING" { // after a tail-log backup
			d.state = "ONLINE"
			return nil
		}
		return fmt.Errorf("mssql: The database '%s' is not in the restoring state. (3117)", name)
	}
	d.rows = d.restoring.rows
	if d.restoring.done {
		d.fork = f.newGUID()
	}
	d.restoring = nil
	d.state = "ONLINE"
	d.points = []point{{T: f.clock.Now(), Rows: d.rows}}
	return nil
}

// foreign takes a backup the way another tool would: to its own device.
func (f *fakeServer) foreign(t *testing.T, db, kind string) chain.Record {
	t.Helper()
	dir := t.TempDir()
	var stmt string
	switch kind {
	case "full":
		stmt = fmt.Sprintf("BACKUP DATABASE [%s] TO DISK = N'%s/other-tool.bak' WITH FORMAT, CHECKSUM;", db, dir)
	case "log":
		stmt = fmt.Sprintf("BACKUP LOG [%s] TO DISK = N'%s/other-tool.trn' WITH FORMAT, CHECKSUM;", db, dir)
	}
	if err := f.Exec(context.Background(), stmt, nil); err != nil {
		t.Fatal(err)
	}
	return f.history[len(f.history)-1]
}

func (f *fakeServer) rowsAt(db string, t time.Time) int {
	d := f.db(db)
	rows := -1
	for _, p := range d.points {
		if !p.T.After(t) {
			rows = p.Rows
		}
	}
	return rows
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
