namespace MedServe.Grains.Audit;

[GenerateSerializer, Alias("medserve.audit-head")]
public sealed class AuditHead
{
    [Id(0)] public long Count { get; set; }
    [Id(1)] public string LastHash { get; set; } = AuditChain.Genesis;
}

[GenerateSerializer, SuppressReferenceTracking, Alias("medserve.audit-chunk")]
public sealed class AuditChunk
{
    [Id(0)] public List<AuditRecord> Records { get; set; } = [];
}

/// <summary>
/// The audit trail: a head (count, last hash) and records in chunks of <see cref="ChunkSize"/>, each chunk its own
/// grain state, so an append rewrites one small chunk, never the whole trail. Stored through the grain storage
/// (files in the embedded node, Redis in a cluster). Appends come in batches from each host's audit writer.
/// </summary>
internal sealed class AuditLogGrain(
    [PersistentState("audit-head", StorageNames.State)] IPersistentState<AuditHead> head,
    IGrainFactory grains) : Grain, IAuditLogGrain
{
    public const int ChunkSize = 512;

    public async Task<long> AppendAsync(AuditEvent[] events)
    {
        var count = head.State.Count;
        var last = head.State.LastHash;
        var byChunk = new Dictionary<long, List<AuditRecord>>();
        foreach (var e in events)
        {
            count++;
            var record = AuditChain.Seal(count, e, last);
            last = record.Hash;
            var chunk = (count - 1) / ChunkSize;
            if (!byChunk.TryGetValue(chunk, out var list))
            {
                byChunk[chunk] = list = [];
            }
            list.Add(record);
        }
        // Records first, then the head: a crash between leaves records past the head, which the next append overwrites.
        foreach (var (chunk, records) in byChunk)
        {
            await grains.GetGrain<IAuditChunkGrain>(chunk).AppendAsync([.. records]);
        }
        head.State.Count = count;
        head.State.LastHash = last;
        await head.WriteOrReloadAsync(DeactivateOnIdle);
        return count;
    }

    public async Task<AuditRecord[]> ReadAsync(long fromSeq, int count)
    {
        fromSeq = Math.Max(1, fromSeq);
        var end = Math.Min(head.State.Count, fromSeq + Math.Clamp(count, 0, 100_000) - 1);
        var result = new List<AuditRecord>();
        for (var chunk = (fromSeq - 1) / ChunkSize; chunk <= (end - 1) / ChunkSize && end >= fromSeq; chunk++)
        {
            var records = await grains.GetGrain<IAuditChunkGrain>(chunk).ReadAsync();
            result.AddRange(records.Where(r => r.Seq >= fromSeq && r.Seq <= end));
        }
        return [.. result];
    }

    public Task<(long Count, string LastHash)> HeadAsync() => Task.FromResult((head.State.Count, head.State.LastHash));
}

/// <summary>One chunk of the audit trail (key: chunk number). Internal to the trail.</summary>
public interface IAuditChunkGrain : IGrainWithIntegerKey
{
    Task AppendAsync(AuditRecord[] records);

    Task<AuditRecord[]> ReadAsync();
}

internal sealed class AuditChunkGrain(
    [PersistentState("audit-chunk", StorageNames.State)] IPersistentState<AuditChunk> chunk) : Grain, IAuditChunkGrain
{
    public async Task AppendAsync(AuditRecord[] records)
    {
        // Records past what is stored replace any left by an append whose head write failed.
        var first = records[0].Seq;
        chunk.State.Records.RemoveAll(r => r.Seq >= first);
        chunk.State.Records.AddRange(records);
        await chunk.WriteOrReloadAsync(DeactivateOnIdle);
        if (chunk.State.Records.Count >= AuditLogGrain.ChunkSize)
        {
            // A full chunk is read only when someone pages through the trail: its records leave memory now rather than
            // after the idle collection age (15 minutes), which under inference load held every recent record.
            DeactivateOnIdle();
        }
    }

    private LeaveWhenQuiet? _leave;

    public Task<AuditRecord[]> ReadAsync()
    {
        if (chunk.State.Records.Count >= AuditLogGrain.ChunkSize)
        {
            // A full chunk read to page through or verify the trail leaves memory again once reads stop.
            (_leave ??= new(this, DeactivateOnIdle, LeaveWhenQuiet.Default)).Touch();
        }
        return Task.FromResult(chunk.State.Records.ToArray());
    }
}
