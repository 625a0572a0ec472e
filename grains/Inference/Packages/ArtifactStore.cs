using System.Security.Cryptography;

namespace MedServe.Inference.Packages;

/// <summary>
/// Model artifacts stored by content: <c>{root}/sha256/{hh}/{hash}</c>. Written once (temp file, then rename),
/// verified on every read, so a torn write or a flipped bit never reaches ONNX Runtime.
/// </summary>
public sealed class ArtifactStore(string root)
{
    public string Root { get; } = Path.GetFullPath(root);

    public static string Hash(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>Stores the bytes (a no-op when present) and returns their SHA-256.</summary>
    public async Task<string> PutAsync(byte[] bytes, CancellationToken cancellationToken = default)
    {
        var sha = Hash(bytes);
        var path = PathOf(sha);
        if (File.Exists(path))
        {
            return sha;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temp = path + "." + Guid.NewGuid().ToString("N") + ".tmp";
        await using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 81920, FileOptions.WriteThrough))
        {
            await file.WriteAsync(bytes, cancellationToken);
        }
        File.Move(temp, path, overwrite: true);
        return sha;
    }

    public bool Contains(string sha256) => File.Exists(PathOf(sha256));

    /// <summary>Stores bytes that must hash to <paramref name="sha256"/> (fetched from elsewhere).</summary>
    public async Task PutVerifiedAsync(byte[] bytes, string sha256, CancellationToken cancellationToken = default)
    {
        if (Hash(bytes) != sha256)
        {
            throw new MedServeException(ErrorKind.Internal, $"artifact sha256:{sha256} fetched from the cluster does not match its hash");
        }
        await PutAsync(bytes, cancellationToken);
    }

    /// <summary>Reads an artifact and checks its hash.</summary>
    public async Task<byte[]> GetAsync(string sha256, CancellationToken cancellationToken = default)
    {
        var path = PathOf(sha256);
        if (!File.Exists(path))
        {
            throw MedServeException.NotFound($"artifact sha256:{sha256} is not in this node's store");
        }
        var bytes = await File.ReadAllBytesAsync(path, cancellationToken);
        if (Hash(bytes) != sha256)
        {
            throw new MedServeException(ErrorKind.Internal, $"artifact sha256:{sha256} is corrupt on disk (hash mismatch)");
        }
        return bytes;
    }

    public string PathOf(string sha256)
    {
        if (sha256.Length != 64 || !sha256.All(Uri.IsHexDigit))
        {
            throw MedServeException.Invalid("not a SHA-256 hex digest", "sha256");
        }
        return Path.Combine(Root, "sha256", sha256[..2], sha256);
    }
}
