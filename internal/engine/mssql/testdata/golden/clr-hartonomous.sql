-- hartvault: CLR deploy script exported from database [Hartonomous]
-- assemblies in dependency order: System.Memory, System.Numerics.Tensors, Hartonomous.Clr
-- Run it in the target database (hartvault restore --apply does). It drops the objects and
-- assemblies below and creates them again, in one transaction: on any error nothing changes.
-- not recreated: trigger dbo.AuditVectors (CLR DML trigger)
SET XACT_ABORT ON;
GO
BEGIN TRANSACTION;
GO
IF OBJECT_ID(N'[search].[TopK]') IS NOT NULL DROP FUNCTION [search].[TopK];
GO
IF OBJECT_ID(N'[dbo].[VectorCentroid]') IS NOT NULL DROP AGGREGATE [dbo].[VectorCentroid];
GO
IF OBJECT_ID(N'[dbo].[RebuildIndex]') IS NOT NULL DROP PROCEDURE [dbo].[RebuildIndex];
GO
IF OBJECT_ID(N'[dbo].[CosineSimilarity]') IS NOT NULL DROP FUNCTION [dbo].[CosineSimilarity];
GO
IF TYPE_ID(N'[dbo].[Vector]') IS NOT NULL DROP TYPE [dbo].[Vector];
GO
IF EXISTS (SELECT 1 FROM sys.assemblies WHERE name = N'Hartonomous.Clr') DROP ASSEMBLY [Hartonomous.Clr];
GO
IF EXISTS (SELECT 1 FROM sys.assemblies WHERE name = N'System.Numerics.Tensors') DROP ASSEMBLY [System.Numerics.Tensors];
GO
IF EXISTS (SELECT 1 FROM sys.assemblies WHERE name = N'System.Memory') DROP ASSEMBLY [System.Memory];
GO
IF NOT EXISTS (SELECT 1 FROM sys.trusted_assemblies WHERE hash = 0xAE9F5F31AB22A349B2ADF1BF7CEA631A01CEEF5A99469F166F76F40822D3447132648C3A7CF4FF738273B6ADE5F9CA730FFB0B0EC5DCF78FF8D83F8A51BA191A) EXEC sys.sp_add_trusted_assembly @hash = 0xAE9F5F31AB22A349B2ADF1BF7CEA631A01CEEF5A99469F166F76F40822D3447132648C3A7CF4FF738273B6ADE5F9CA730FFB0B0EC5DCF78FF8D83F8A51BA191A, @description = N'system.memory, version=4.0.1.2, culture=neutral, publickeytoken=cc7b13ffcd2ddd51, processorarchitecture=msil';
GO
-- system.memory, version=4.0.1.2, culture=neutral, publickeytoken=cc7b13ffcd2ddd51, processorarchitecture=msil
CREATE ASSEMBLY [System.Memory] FROM 0x4D5A90000300000004000000FFFF0000B80000004D656D6F7279 WITH PERMISSION_SET = UNSAFE;
GO
ALTER ASSEMBLY [System.Memory] WITH VISIBILITY = OFF;
GO
IF NOT EXISTS (SELECT 1 FROM sys.trusted_assemblies WHERE hash = 0x7202FBCF439AECF7AB6AB4275B25F6CCFF9858E60DA18FA96271FFEEB47E9018F0398F34204EFD7C18321A727E105F9F712C2D735A53BC03D2839501975330F7) EXEC sys.sp_add_trusted_assembly @hash = 0x7202FBCF439AECF7AB6AB4275B25F6CCFF9858E60DA18FA96271FFEEB47E9018F0398F34204EFD7C18321A727E105F9F712C2D735A53BC03D2839501975330F7, @description = N'system.numerics.tensors, version=8.0.0.0, culture=neutral, publickeytoken=cc7b13ffcd2ddd51, processorarchitecture=msil';
GO
-- system.numerics.tensors, version=8.0.0.0, culture=neutral, publickeytoken=cc7b13ffcd2ddd51, processorarchitecture=msil
CREATE ASSEMBLY [System.Numerics.Tensors] FROM 0x4D5A90000300000004000000FFFF0000B800000054656E736F7273 WITH PERMISSION_SET = UNSAFE;
GO
ALTER ASSEMBLY [System.Numerics.Tensors] WITH VISIBILITY = OFF;
GO
IF NOT EXISTS (SELECT 1 FROM sys.trusted_assemblies WHERE hash = 0x4566A0C3E1D6D71A6C417B11CA6F6A410630FB50183C2C10FAC38C5E0E32490568016C98E58C6AD02D9859240570C7E3C5817D46EBC97FD399BDD058DF54644B) EXEC sys.sp_add_trusted_assembly @hash = 0x4566A0C3E1D6D71A6C417B11CA6F6A410630FB50183C2C10FAC38C5E0E32490568016C98E58C6AD02D9859240570C7E3C5817D46EBC97FD399BDD058DF54644B, @description = N'hartonomous.clr, version=1.4.2.0, culture=neutral, publickeytoken=null, processorarchitecture=msil';
GO
-- hartonomous.clr, version=1.4.2.0, culture=neutral, publickeytoken=null, processorarchitecture=msil
CREATE ASSEMBLY [Hartonomous.Clr] AUTHORIZATION [dbo] FROM 0x4D5A90000300000004000000FFFF0000B8000000486172746F6E6F6D6F75732E436C72 WITH PERMISSION_SET = UNSAFE;
GO
ALTER ASSEMBLY [Hartonomous.Clr] ADD FILE FROM 0x42534A4201000100000000000C000000 AS N'Hartonomous.Clr.pdb';
GO
CREATE TYPE [dbo].[Vector] EXTERNAL NAME [Hartonomous.Clr].[Hartonomous.Clr.Vector];
GO
CREATE FUNCTION [dbo].[CosineSimilarity](@a varbinary(max), @b varbinary(max)) RETURNS float WITH RETURNS NULL ON NULL INPUT AS EXTERNAL NAME [Hartonomous.Clr].[Hartonomous.Clr.VectorFunctions].[CosineSimilarity];
GO
CREATE PROCEDURE [dbo].[RebuildIndex] @name nvarchar(128), @rows bigint OUTPUT WITH EXECUTE AS OWNER AS EXTERNAL NAME [Hartonomous.Clr].[Hartonomous.Clr.Maintenance].[RebuildIndex];
GO
CREATE AGGREGATE [dbo].[VectorCentroid](@v [dbo].[Vector]) RETURNS [dbo].[Vector] EXTERNAL NAME [Hartonomous.Clr].[Hartonomous.Clr.Centroid];
GO
CREATE FUNCTION [search].[TopK](@query [dbo].[Vector], @k int) RETURNS TABLE ([id] bigint, [score] float, [label] nvarchar(200)) AS EXTERNAL NAME [Hartonomous.Clr].[Hartonomous.Clr.Search].[TopK];
GO
COMMIT TRANSACTION;
GO
