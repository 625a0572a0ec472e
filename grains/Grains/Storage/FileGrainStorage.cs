using System.Text.Json;
using System.Text.Json.Serialization;
using Orleans.Storage;

namespace MedServe.Grains.Storage;

/// <summary>
/// Grain state as one JSON file per grain under a directory: the embedded node's persistence.
/// Writes go to a temporary file that is flushed and renamed over the old one, so a crash leaves the old
/// state or the new, never half of one. An ETag counter refuses writes from a stale activation.
/// </summary>
public sealed class FileGrainStorage(string root) : IGrainStorage
{
    private static readonly JsonSerializerOptions Json = CreateOptions();

    private static JsonSerializerOptions CreateOptions()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web)
        {
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
            WriteIndented = true,
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
            etag = (await ReadAsync<T>(path)).Etag;
            CheckEtag(grainState.ETag, etag, grainId);
        }
        else if (grainState.ETag is not null)
        {
            throw new InconsistentStateException($"state of {grainId} was deleted by another activation", grainState.ETag, "");
        }
        var next = etag + 1;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temp = path + ".tmp";
        await using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 4096, FileOptions.WriteThrough))
        {
            await JsonSerializer.SerializeAsync(file, new Envelope<T>(next, grainState.State!), Json);
        }
        File.Move(temp, path, overwrite: true);
        grainState.ETag = next.ToString(System.Globalization.CultureInfo.InvariantCulture);
        grainState.RecordExists = true;
    }

    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var path = PathOf(stateName, grainId);
        if (File.Exists(path))
        {
            CheckEtag(grainState.ETag, (await ReadAsync<T>(path)).Etag, grainId);
            File.Delete(path);
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
