-- verify a striped backup with checksums
RESTORE VERIFYONLY FROM URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-full-ab12/Hartonomous.full.01of03.bak', URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-full-ab12/Hartonomous.full.02of03.bak', URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-full-ab12/Hartonomous.full.03of03.bak' WITH FILE = 1, CHECKSUM, STATS = 10;
-- verify a backup taken without CHECKSUM
RESTORE VERIFYONLY FROM DISK = N'/var/opt/mssql/backup/x.bak' WITH FILE = 1;
-- files of the full backup (for MOVE)
RESTORE FILELISTONLY FROM URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-full-ab12/Hartonomous.full.01of03.bak', URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-full-ab12/Hartonomous.full.02of03.bak', URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-full-ab12/Hartonomous.full.03of03.bak' WITH FILE = 1;
-- backup set header when msdb has no history
RESTORE HEADERONLY FROM URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-full-ab12/Hartonomous.full.01of03.bak', URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-full-ab12/Hartonomous.full.02of03.bak', URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-full-ab12/Hartonomous.full.03of03.bak';
-- point in time under a new name: full
RESTORE DATABASE [Hartonomous_Restored] FROM URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-full-ab12/Hartonomous.full.01of03.bak', URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-full-ab12/Hartonomous.full.02of03.bak', URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-full-ab12/Hartonomous.full.03of03.bak' WITH FILE = 1, MOVE N'Hartonomous' TO N'D:\SQLData\Hartonomous_Restored.mdf', MOVE N'Hartonomous_Vectors' TO N'D:\SQLData\Hartonomous_Restored_Vectors.ndf', MOVE N'Hartonomous_log' TO N'L:\SQLLogs\Hartonomous_Restored_log.ldf', CHECKSUM, NORECOVERY, STATS = 10;
-- differential
RESTORE DATABASE [Hartonomous_Restored] FROM URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T000000Z-diff-cd34/Hartonomous.diff.bak' WITH FILE = 1, MOVE N'Hartonomous' TO N'D:\SQLData\Hartonomous_Restored.mdf', MOVE N'Hartonomous_Vectors' TO N'D:\SQLData\Hartonomous_Restored_Vectors.ndf', MOVE N'Hartonomous_log' TO N'L:\SQLLogs\Hartonomous_Restored_log.ldf', CHECKSUM, NORECOVERY, STATS = 10;
-- log 1 with the same STOPAT
RESTORE LOG [Hartonomous_Restored] FROM URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T001500Z-log-ef56/Hartonomous.log.trn' WITH FILE = 1, CHECKSUM, NORECOVERY, STOPAT = N'2025-11-12T14:40:00.000', STATS = 10;
-- log 2 with the same STOPAT
RESTORE LOG [Hartonomous_Restored] FROM URL = N'https://hartvault.blob.core.windows.net/backups/data/hartonomous-sql/20251112T011500Z-log-0a1b/Hartonomous.log.trn' WITH FILE = 1, CHECKSUM, NORECOVERY, STOPAT = N'2025-11-12T14:40:00.000', STATS = 10;
-- recovery
RESTORE DATABASE [Hartonomous_Restored] WITH RECOVERY;
-- over the live database: exclusive access
ALTER DATABASE [Hartonomous] SET SINGLE_USER WITH ROLLBACK IMMEDIATE;
-- full over the existing database, backup without checksums
RESTORE DATABASE [Hartonomous] FROM DISK = N'D:\hartvault\staging\r1\Hartonomous.full.bak' WITH FILE = 1, REPLACE, NORECOVERY, STATS = 5;
-- last log to its end, with recovery
RESTORE LOG [Hartonomous] FROM DISK = N'D:\hartvault\staging\r1\Hartonomous.log.trn' WITH FILE = 1, RECOVERY;
-- give the database back after a failed step
ALTER DATABASE [Hartonomous] SET MULTI_USER;
-- headers of a file another tool appended backups to: every backup set, whatever the position
RESTORE HEADERONLY FROM DISK = N'E:\Backup\Hartonomous_log.trn';
-- files of its third backup set
RESTORE FILELISTONLY FROM DISK = N'E:\Backup\Hartonomous_log.trn' WITH FILE = 3;
-- its third backup set, a log
RESTORE LOG [Hartonomous] FROM DISK = N'E:\Backup\Hartonomous_log.trn' WITH FILE = 3, CHECKSUM, NORECOVERY, STOPAT = N'2025-11-12T14:40:00.000', STATS = 10;
-- log backups need FULL recovery
ALTER DATABASE [Hartonomous] SET RECOVERY FULL;
