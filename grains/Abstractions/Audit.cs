using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Orleans.Concurrency;

namespace MedServe;

/// <summary>
/// Something someone did, as a front end reports it to the audit trail: who (a key id, never the key), what, on which
/// model version, a SHA-256 of the input (never the input), and how it ended.
/// </summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("medserve.audit-event")]
public sealed record AuditEvent
{
    [Id(0)] public DateTimeOffset At { get; init; }
    [Id(1)] public string Actor { get; init; } = "";
    /// <summary>See <see cref="AuditActions"/>.</summary>
    [Id(2)] public string Action { get; init; } = "";
    [Id(3)] public string? Model { get; init; }
    [Id(4)] public string? Version { get; init; }
    [Id(5)] public string? InputSha256 { get; init; }
    /// <summary><c>ok</c>, or the error kind (<c>InvalidInput</c>, <c>Forbidden</c>, ...).</summary>
    [Id(6)] public string Outcome { get; init; } = "ok";
    /// <summary>Ids only (a job id, a key id, a replica count): never patient data.</summary>
    [Id(7)] public string? Detail { get; init; }
}

/// <summary>A stored audit record: the event, its place in the trail, and the hash chain that makes edits show.</summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("medserve.audit-record")]
public sealed record AuditRecord
{
    [Id(0)] public long Seq { get; init; }
    [Id(1)] public AuditEvent Event { get; init; } = new();
    /// <summary>The hash of the record before this one (64 zeros for the first).</summary>
    [Id(2)] public string PrevHash { get; init; } = AuditChain.Genesis;
    /// <summary>SHA-256 over this record's fields and <see cref="PrevHash"/>.</summary>
    [Id(3)] public string Hash { get; init; } = "";
}

/// <summary>Names of audited actions.</summary>
public static class AuditActions
{
    public const string SignIn = "sign-in";
    public const string KeyCreate = "key.create";
    public const string KeyRevoke = "key.revoke";
    public const string DataProtectionRotate = "data-protection.rotate";
    public const string Upload = "model.upload";
    public const string DeleteVersion = "model.delete";
    public const string DefaultVersion = "model.default-version";
    public const string Deploy = "deployment.deploy";
    public const string Scale = "deployment.scale";
    public const string Undeploy = "deployment.undeploy";
    public const string Infer = "infer";
    public const string JobSubmit = "job.submit";
    public const string JobCancel = "job.cancel";
    public const string JobDelete = "job.delete";
    public const string JobDownload = "job.download";
    public const string StudyStore = "study.store";
}

/// <summary>The audit trail (singleton, key 0): appends in batches, chains each record to the one before, reads in pages.</summary>
public interface IAuditLogGrain : IGrainWithIntegerKey
{
    /// <summary>Appends events in order; answers the sequence number of the last.</summary>
    Task<long> AppendAsync(AuditEvent[] events);

    /// <summary>Records from <paramref name="fromSeq"/> (1-based), at most <paramref name="count"/>, in order.</summary>
    [ResponseTimeout("00:01:00")]
    Task<AuditRecord[]> ReadAsync(long fromSeq, int count);

    /// <summary>How many records there are and the last one's hash.</summary>
    Task<(long Count, string LastHash)> HeadAsync();
}

/// <summary>The hash chain: one home for how a record is hashed and how a trail is verified.</summary>
public static class AuditChain
{
    public static readonly string Genesis = new('0', 64);

    public static string HashOf(long seq, AuditEvent e, string prevHash)
    {
        // A JSON array of the fields: unambiguous whatever the fields contain. Written into a buffer this thread keeps
        // (the trail hashes every inference of the cluster); the bytes are those of JsonSerializer on a string array.
        var buffer = t_buffer ??= new ArrayBufferWriter<byte>(1024);
        buffer.ResetWrittenCount();
        var json = t_json ??= new Utf8JsonWriter(buffer);
        json.Reset(buffer);
        Span<char> text = stackalloc char[40];
        json.WriteStartArray();
        json.WriteStringValue(seq.TryFormat(text, out var n, provider: CultureInfo.InvariantCulture) ? text[..n] : seq.ToString(CultureInfo.InvariantCulture));
        json.WriteStringValue(e.At.UtcDateTime.TryFormat(text, out n, "O", CultureInfo.InvariantCulture)
            ? text[..n] : e.At.UtcDateTime.ToString("O", CultureInfo.InvariantCulture));
        json.WriteStringValue(e.Actor);
        json.WriteStringValue(e.Action);
        json.WriteStringValue(e.Model ?? "");
        json.WriteStringValue(e.Version ?? "");
        json.WriteStringValue(e.InputSha256 ?? "");
        json.WriteStringValue(e.Outcome);
        json.WriteStringValue(e.Detail ?? "");
        json.WriteStringValue(prevHash);
        json.WriteEndArray();
        json.Flush();
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(buffer.WrittenSpan, hash);
        return Convert.ToHexStringLower(hash);
    }

    [ThreadStatic] private static ArrayBufferWriter<byte>? t_buffer;
    [ThreadStatic] private static Utf8JsonWriter? t_json;

    public static AuditRecord Seal(long seq, AuditEvent e, string prevHash) =>
        new() { Seq = seq, Event = e, PrevHash = prevHash, Hash = HashOf(seq, e, prevHash) };

    /// <summary>
    /// Checks records read in order from the start of the trail, against the head the trail keeps. Null when the
    /// chain holds; otherwise which record is wrong and how (edited, removed, reordered, or the end cut off).
    /// </summary>
    public static string? Verify(IEnumerable<AuditRecord> records, long headCount, string headHash)
    {
        var expectedSeq = 1L;
        var prev = Genesis;
        var list = records as IReadOnlyList<AuditRecord> ?? [.. records];
        for (var i = 0; i < list.Count; i++)
        {
            var r = list[i];
            if (r.Seq != expectedSeq)
            {
                var later = false;
                for (var j = i + 1; j < list.Count && !later; j++)
                {
                    later = list[j].Seq == expectedSeq;
                }
                return later ? $"record {expectedSeq} comes after record {r.Seq}: reordered"
                    : r.Seq > expectedSeq ? $"record {expectedSeq} is missing (the next one found is {r.Seq}): removed"
                    : $"record {r.Seq} appears again where record {expectedSeq} should be: duplicated or reordered";
            }
            if (HashOf(r.Seq, r.Event, r.PrevHash) != r.Hash)
            {
                return $"record {r.Seq} does not match its hash: edited";
            }
            if (r.PrevHash != prev)
            {
                return $"record {r.Seq} does not follow record {r.Seq - 1} (its previous hash differs): removed, reordered or rewritten before it";
            }
            prev = r.Hash;
            expectedSeq++;
        }
        if (expectedSeq - 1 != headCount)
        {
            return expectedSeq - 1 < headCount
                ? $"the trail ends at record {expectedSeq - 1} but has {headCount}: records {expectedSeq}..{headCount} removed"
                : $"the trail has {expectedSeq - 1} records but its head says {headCount}";
        }
        return prev != headHash ? $"the last record ({headCount}) is not the one the head recorded: edited or replaced" : null;
    }

    /// <summary>SHA-256 of an input, as the trail names it.</summary>
    public static string InputHash(ReadOnlySpan<byte> input) => InputDigest.Of(input).ToHex()!;
}

/// <summary>
/// A SHA-256 of an input held as its 32 bytes, not yet as text: an inference's audit record waits in memory until its
/// batch is written, and a string per request there outlives the young generation. <c>default</c> is "no input".
/// </summary>
public struct InputDigest
{
    private Sha256Bytes _bytes;
    private bool _set;

    public static InputDigest Of(ReadOnlySpan<byte> input)
    {
        var digest = new InputDigest { _set = true };
        SHA256.HashData(input, digest._bytes);
        return digest;
    }

    /// <summary>The digest as <see cref="AuditEvent.InputSha256"/> writes it (lower-case hex), or null for none.</summary>
    public readonly string? ToHex() => _set ? Convert.ToHexStringLower(_bytes) : null;

    [System.Runtime.CompilerServices.InlineArray(SHA256.HashSizeInBytes)]
    private struct Sha256Bytes
    {
        private byte _first;
    }
}
