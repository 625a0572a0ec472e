using System.Text.Json;
using System.Text.Json.Serialization;
using Orleans.Storage;

namespace MedServe.Grains.Storage;

/// <summary>
/// Grain state as one JSON file per grain under a directory: the embedded node's persistence.
/// Writes go to a temporary file that is written whole, flushed to disk once (fsync) and renamed over the old one, so a
/// crash leaves the old state or the new, never half of one. An ETag counter refuses writes from a stale activation;
/// the ETag of each file this storage wrote is kept in memory, so a write does not read and parse the old state first
/// (the audit trail appends to a chunk of hundreds of records several times a second).
/// </summary>
public sealed class FileGrainStorage(string root) : IGrainStorage
{
    private static readonly JsonSerializerOptions Json = CreateOptions();

    /// <summary>
    /// The ETag of every file this storage has read or written, by path, with the file's length and write time then:
    /// a file changed since (another storage on the same directory, as silos of one test host share) is read again.
    /// </summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (long Etag, long Length, DateTime Written)> _etags = new(StringComparer.Ordinal);

    /// <summary>
    /// Entries kept at most: one per state file touched (every job's chunks and result parts among them), so the map
    /// would otherwise grow for the life of the process. Forgetting is safe: an ETag not here is read from its file.
    /// </summary>
    private const int MaxRemembered = 100_000;

    private void Remember(string path, long etag)
    {
        // Counted only when adding a path not seen yet (ConcurrentDictionary.Count takes every lock).
        if (!_etags.ContainsKey(path) && _etags.Count >= MaxRemembered)
        {
            _etags.Clear();
        }
        var info = new FileInfo(path);
        _etags[path] = (etag, info.Length, info.LastWriteTimeUtc);
    }

    private async Task<long> EtagOfAsync<T>(string path)
    {
        if (_etags.TryGetValue(path, out var known))
        {
            var info = new FileInfo(path);
            if (info.Exists && info.Length == known.Length && info.LastWriteTimeUtc == known.Written)
            {
                return known.Etag;
            }
        }
        return (await ReadAsync<T>(path)).Etag;
    }

    private static JsonSerializerOptions CreateOptions()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web)
        {
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        };
        options.Converters.Add(new JsonStringEnumConverter());
        return options;
    }

    private sealed record Envelope<T>(long Etag, T State);

    public string Root { get; } = Path.GetFullPath(root);

    public async Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var path = PathOf(stateName, grainId);
        if (!File.Exists(path))
        {
            grainState.State = Activator.CreateInstance<T>();
            grainState.ETag = null;
            grainState.RecordExists = false;
            return;
        }
        var envelope = await ReadAsync<T>(path);
        Remember(path, envelope.Etag);
        grainState.State = envelope.State;
        grainState.ETag = envelope.Etag.ToString(System.Globalization.CultureInfo.InvariantCulture);
        grainState.RecordExists = true;
    }

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var path = PathOf(stateName, grainId);
        long etag = 0;
        if (File.Exists(path))
        {
            etag = await EtagOfAsync<T>(path);
            CheckEtag(grainState.ETag, etag, grainId);
        }
        else if (grainState.ETag is not null)
        {
            throw new InconsistentStateException($"state of {grainId} was deleted by another activation", grainState.ETag, "");
        }
        var next = etag + 1;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temp = path + ".tmp";
        // Serialised through the file's buffer (pooled buffers, never the whole state as one array: a chunk of the
        // audit trail is a few hundred KB, a large-object-heap allocation on every append) and made durable with one
        // fsync at the end (a write-through stream synced every 4 KiB it wrote: dozens of disk waits for one chunk).
        await using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 64 * 1024, FileOptions.Asynchronous))
        {
            await JsonSerializer.SerializeAsync(file, new Envelope<T>(next, grainState.State!), Json);
            await file.FlushAsync();
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        Remember(path, next);
        grainState.ETag = next.ToString(System.Globalization.CultureInfo.InvariantCulture);
        grainState.RecordExists = true;
    }

    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var path = PathOf(stateName, grainId);
        if (File.Exists(path))
        {
            CheckEtag(grainState.ETag, await EtagOfAsync<T>(path), grainId);
            File.Delete(path);
            _etags.TryRemove(path, out _);
        }
        grainState.State = Activator.CreateInstance<T>();
        grainState.ETag = null;
        grainState.RecordExists = false;
    }

    private static void CheckEtag(string? expected, long actual, GrainId grainId)
    {
        var actualText = actual.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (expected != actualText)
        {
            throw new InconsistentStateException($"state of {grainId} was changed by another activation", actualText, expected ?? "");
        }
    }

    private static async Task<Envelope<T>> ReadAsync<T>(string path)
    {
        await using var file = File.OpenRead(path);
        return await JsonSerializer.DeserializeAsync<Envelope<T>>(file, Json)
            ?? throw new InvalidDataException($"{path} holds no state");
    }

    private string PathOf(string stateName, GrainId grainId) =>
        Path.Combine(Root, Uri.EscapeDataString(grainId.Type.ToString()!), Uri.EscapeDataString(grainId.Key.ToString()!) + "." + Uri.EscapeDataString(stateName) + ".json");
}
