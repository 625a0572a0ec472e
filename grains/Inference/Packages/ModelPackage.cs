using MedServe.Protocol;
using System.IO.Compression;

namespace MedServe.Inference.Packages;

/// <summary>
/// A model package as uploaded: <c>manifest.json</c> and <c>model.onnx</c>, from a directory, a zip or two parts.
/// </summary>
public sealed record ModelPackage(ModelManifest Manifest, byte[] Model)
{
    public const string ManifestFile = "manifest.json";
    public const string ModelFile = "model.onnx";

    /// <summary>Largest manifest.json: a manifest is a few kilobytes; a zip's manifest over this is refused before it is unpacked.</summary>
    public const long MaxManifestBytes = 1024 * 1024;

    /// <summary>Builds a package from the two files' bytes, checking the manifest.</summary>
    public static ModelPackage FromParts(ReadOnlySpan<byte> manifestJson, byte[] model)
    {
        var manifest = ManifestJson.Parse(manifestJson);
        if (model.Length == 0)
        {
            throw MedServeException.Invalid("model.onnx is empty", "model");
        }
        return new ModelPackage(manifest, model);
    }

    /// <summary>Reads a package directory.</summary>
    public static ModelPackage FromDirectory(string directory)
    {
        var manifestPath = Path.Combine(directory, ManifestFile);
        var modelPath = Path.Combine(directory, ModelFile);
        if (!File.Exists(manifestPath))
        {
            throw MedServeException.Invalid($"{directory} has no {ManifestFile}", "manifest");
        }
        if (!File.Exists(modelPath))
        {
            throw MedServeException.Invalid($"{directory} has no {ModelFile}", "model");
        }
        return FromParts(File.ReadAllBytes(manifestPath), File.ReadAllBytes(modelPath));
    }

    /// <summary>Reads a zip holding manifest.json and model.onnx (at its root or in one top folder).</summary>
    public static ModelPackage FromZip(Stream zip, long maxUncompressedBytes)
    {
        ZipArchive archive;
        try
        {
            archive = new ZipArchive(zip, ZipArchiveMode.Read, leaveOpen: true);
        }
        catch (InvalidDataException)
        {
            throw MedServeException.Invalid("the package is not a valid zip archive", "package");
        }
        using (archive)
        {
            var manifest = Find(archive, ManifestFile) ?? throw MedServeException.Invalid($"the zip has no {ManifestFile}", "manifest");
            var model = Find(archive, ModelFile) ?? throw MedServeException.Invalid($"the zip has no {ModelFile}", "model");
            // Sizes as the zip declares them, before anything is unpacked (a zip bomb is refused here); an entry that
            // unpacks to more than it declared fails as corrupt while it is read.
            if (manifest.Length > MaxManifestBytes)
            {
                throw new MedServeException(ErrorKind.TooLarge, $"{ManifestFile} unpacks to {manifest.Length} bytes; the limit is {MaxManifestBytes}", "manifest");
            }
            if (manifest.Length + model.Length > maxUncompressedBytes)
            {
                throw new MedServeException(ErrorKind.TooLarge, $"the package unpacks to {manifest.Length + model.Length} bytes; the limit is {maxUncompressedBytes} ({LimitsOptions.Section}:MaxPackageBytes)", "package");
            }
            try
            {
                // The manifest first: a package whose manifest is wrong is refused without unpacking its model.
                var parsed = ManifestJson.Parse(ReadAll(manifest));
                var bytes = ReadAll(model);
                return bytes.Length == 0 ? throw MedServeException.Invalid("model.onnx is empty", "model") : new ModelPackage(parsed, bytes);
            }
            catch (InvalidDataException)
            {
                throw MedServeException.Invalid("the zip archive is corrupt", "package");
            }
        }
    }

    private static ZipArchiveEntry? Find(ZipArchive archive, string file) =>
        archive.Entries.FirstOrDefault(e => e.FullName == file)
        ?? archive.Entries.FirstOrDefault(e => e.FullName.EndsWith("/" + file, StringComparison.Ordinal) && e.FullName.Count(c => c == '/') == 1);

    private static byte[] ReadAll(ZipArchiveEntry entry)
    {
        using var stream = entry.Open();
        using var buffer = new MemoryStream((int)Math.Min(entry.Length, int.MaxValue));
        stream.CopyTo(buffer);
        return buffer.ToArray();
    }
}
