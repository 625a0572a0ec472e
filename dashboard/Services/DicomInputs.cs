using System.IO.Compression;

namespace MedServe.Dashboard.Services;

/// <summary>
/// DICOM turned into a model's inputs, for DICOM jobs (<c>POST /api/jobs</c>, the Jobs page) and the Try-it page. The web
/// app's project knows the cluster's contracts only, so the silo, which has <c>MedServe.Medical</c> (the managed parser,
/// GDCM in decoder worker processes, the image schema's preprocessing), implements this and registers it; a host
/// without it (<c>medserve-dashboard</c>) answers DICOM with 415 (<see cref="DicomJobs.Require"/>).
/// </summary>
public interface IDicomInputs
{
    /// <summary>
    /// The job items of <paramref name="files"/> for the image input of <paramref name="model"/> (its default version
    /// unless <paramref name="version"/> names one): every header checked before anything is decoded, files grouped by
    /// series (in the order each series first appears) and put in instance order within it, one item per frame or slice,
    /// its id a hash of the instance's pseudonymous SOP Instance UID (<c>#n</c> added per frame of a multi-frame file).
    /// </summary>
    Task<DicomJobInput> JobItemsAsync(string model, string? version, IReadOnlyList<ReadOnlyMemory<byte>> files, CancellationToken cancellationToken);

    /// <summary>One file as the model's input tensor (one row per frame), as V2 infer would make it.</summary>
    Task<DicomTryInput> TensorAsync(string model, string? version, ReadOnlyMemory<byte> file, CancellationToken cancellationToken);
}

/// <summary>The version the items were made for (the job runs that one) and the items.</summary>
public sealed record DicomJobInput(string Version, JobItem[] Items);

/// <summary>The version the tensor was made for and the tensor ([frames, C, H, W] or NHWC as the schema says).</summary>
public sealed record DicomTryInput(string Version, Tensor Tensor);

/// <summary>DICOM jobs: what the management API and the Jobs page share.</summary>
public static class DicomJobs
{
    /// <summary>The job source of DICOM jobs (shown in the job's record; never the data).</summary>
    public const string Source = "dicom";

    /// <summary>The DICOM decoder of this host, or 415 saying this host has none.</summary>
    public static IDicomInputs Require(IDicomInputs? dicom) => dicom ?? throw MedServeException.Unsupported(
        "this host does not decode DICOM (it runs the web app without the medical decoders): send DICOM to a silo's address", "Content-Type");

    /// <summary>A DICOM job's submission: the items <paramref name="dicom"/> makes of the files, source <c>dicom</c>.</summary>
    public static async Task<JobSubmission> SubmissionAsync(IDicomInputs dicom, string model, string? version, IReadOnlyList<ReadOnlyMemory<byte>> files,
        string[]? outputs, CancellationToken cancellationToken)
    {
        var input = await dicom.JobItemsAsync(model, version, files, cancellationToken);
        return new JobSubmission { Model = model, Version = input.Version, Items = input.Items, Outputs = outputs, Source = Source };
    }

    /// <summary>Whether a media type is a zip archive.</summary>
    public static bool IsZip([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] string? mediaType) => mediaType is "application/zip" or "application/x-zip-compressed";

    /// <summary>
    /// The files of a zip of DICOM files, in the archive's order. Folders, <c>__MACOSX/</c>, hidden files and
    /// <c>DICOMDIR</c> are skipped; an entry whose path is absolute or climbs out with <c>..</c> refuses the archive
    /// (400), as do more than <paramref name="maxFiles"/> files or more than <paramref name="maxUnpackedBytes"/> bytes
    /// unpacked (413; checked on the sizes the archive declares before anything is unpacked, and again while
    /// unpacking, so an entry that inflates past its declared size is refused, not followed). Errors name entries by
    /// position, never by name (a file name may carry a patient's).
    /// </summary>
    public static List<ReadOnlyMemory<byte>> Unzip(byte[] zip, long maxUnpackedBytes, int maxFiles)
    {
        ZipArchive archive;
        try
        {
            archive = new ZipArchive(new MemoryStream(zip, writable: false), ZipArchiveMode.Read);
        }
        catch (InvalidDataException)
        {
            throw MedServeException.Invalid("the body is not a valid zip archive", "body");
        }
        using (archive)
        {
            var entries = new List<(int Position, ZipArchiveEntry Entry)>();
            long declared = 0;
            var position = 0;
            foreach (var entry in archive.Entries)
            {
                position++;
                var path = entry.FullName.Replace('\\', '/');
                var segments = path.Split('/');
                if (path.StartsWith('/') || (path.Length > 1 && path[1] == ':') || segments.Any(s => s == ".."))
                {
                    throw MedServeException.Invalid($"zip entry {position}'s path leaves the archive (an absolute path or '..'); send files inside it only", "body");
                }
                var name = segments[^1];
                if (name.Length == 0 || segments[0] == "__MACOSX" || name.StartsWith('.') || name.Equals("DICOMDIR", StringComparison.OrdinalIgnoreCase))
                {
                    continue; // a folder, a resource fork, a hidden file or a media directory: not an instance
                }
                if (entries.Count == maxFiles)
                {
                    throw new MedServeException(ErrorKind.TooLarge, $"the zip holds more than {maxFiles} files; split it into several jobs", "body");
                }
                declared += entry.Length;
                if (declared > maxUnpackedBytes)
                {
                    throw new MedServeException(ErrorKind.TooLarge, $"the zip unpacks to more than {maxUnpackedBytes} bytes ({LimitsOptions.Section}:MaxJobBytes)", "body");
                }
                entries.Add((position, entry));
            }
            if (entries.Count == 0)
            {
                throw MedServeException.Invalid("the zip holds no files", "body");
            }
            var files = new List<ReadOnlyMemory<byte>>(entries.Count);
            foreach (var (at, entry) in entries)
            {
                files.Add(ReadEntry(at, entry));
            }
            return files;
        }
    }

    /// <summary>An entry's bytes, read no further than the size it declares.</summary>
    private static byte[] ReadEntry(int position, ZipArchiveEntry entry)
    {
        var bytes = new byte[entry.Length];
        try
        {
            using var stream = entry.Open();
            var read = 0;
            int n;
            while (read < bytes.Length && (n = stream.Read(bytes, read, bytes.Length - read)) > 0)
            {
                read += n;
            }
            if (read != bytes.Length || stream.ReadByte() >= 0)
            {
                throw MedServeException.Invalid($"zip entry {position} does not unpack to the size it declares", "body");
            }
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException)
        {
            throw MedServeException.Invalid($"zip entry {position} cannot be unpacked (corrupt, encrypted or an unsupported compression method)", "body");
        }
        return bytes;
    }
}
