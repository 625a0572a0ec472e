namespace MedServe.Medical.Dicom;

/// <summary>
/// GDCM's C# binding reads and writes files only, so an instance passes through a scratch file: in a directory only
/// this user can open, with a random name, deleted when the work is done (also when it fails).
/// </summary>
internal sealed class DicomScratch : IDisposable
{
    private static readonly Lazy<string> Directory = new(() =>
    {
        var path = Path.Combine(Path.GetTempPath(), "medserve-dicom-" + Environment.ProcessId);
        System.IO.Directory.CreateDirectory(path);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        return path;
    });

    private DicomScratch(string input, string output)
    {
        Input = input;
        Output = output;
    }

    public string Input { get; }

    public string Output { get; }

    public static DicomScratch Write(ReadOnlySpan<byte> bytes)
    {
        var name = Path.Combine(Directory.Value, Guid.NewGuid().ToString("N"));
        var scratch = new DicomScratch(name + ".in", name + ".out");
        using (var stream = new FileStream(scratch.Input, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.None))
        {
            stream.Write(bytes);
        }
        return scratch;
    }

    public void Dispose()
    {
        File.Delete(Input);
        File.Delete(Output);
    }
}
