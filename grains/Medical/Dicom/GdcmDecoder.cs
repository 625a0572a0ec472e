using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace MedServe.Medical.Dicom;

/// <summary>Pixel data as GDCM decoded it: the geometry and pixel format it reports, and the buffer (little endian, frames one after another).</summary>
public sealed record DecodedPixels(
    int Columns, int Rows, int Frames, int SamplesPerPixel, int BitsAllocated, int BitsStored, int HighBit,
    int PixelRepresentation, int PlanarConfiguration, string Photometric, byte[] Buffer);

/// <summary>Why GDCM could not decode a file; the messages are fixed text, never file content.</summary>
public enum DecodeFailure : byte
{
    None = 0,
    /// <summary>GDCM could not read the file as an image.</summary>
    Unreadable = 1,
    /// <summary>GDCM's geometry or pixel format disagrees with the header, or its buffer is not the size the header declares.</summary>
    Inconsistent = 2,
    /// <summary>The codec failed on the pixel data.</summary>
    CodecFailed = 3,
    /// <summary>The decoder process crashed or broke the protocol.</summary>
    Crashed = 4,
    /// <summary>The decoder took longer than its time limit.</summary>
    TimedOut = 5,
    /// <summary>De-identification refused: Burned In Annotation (0028,0301) is YES.</summary>
    BurnedInAnnotation = 6,
    /// <summary>De-identification: GDCM could not write the file.</summary>
    WriteFailed = 7,
}

/// <summary>
/// The native half of decoding: GDCM's <c>ImageReader</c> on one Part 10 file, <c>GetImage().GetBuffer</c> into a buffer of
/// the size the checked header declares. Runs inside a decoder worker process (<see cref="DicomDecoderWorker"/>): GDCM
/// is native code with assertions that abort the process on some malformed input, so the server never runs it in its own.
/// GDCM reads files by name; the bytes go to an anonymous memory file (<c>memfd_create</c>), never to disk.
/// </summary>
public static partial class GdcmDecoder
{
    private static readonly Lock Once = new();
    private static bool _quiet;

    /// <summary>Decodes <paramref name="file"/>; the buffer must come out exactly <paramref name="expectedBytes"/> long.</summary>
    public static (DecodedPixels? Pixels, DecodeFailure Failure) Decode(ReadOnlySpan<byte> file, long expectedBytes)
    {
        Quiet();
        using var memory = MemoryFile.Create(file);
        using var reader = new gdcm.ImageReader();
        reader.SetFileName(memory.Path);
        if (!reader.Read())
        {
            return (null, DecodeFailure.Unreadable);
        }
        using var image = reader.GetImage();
        using var format = image.GetPixelFormat();
        var dimensions = image.GetNumberOfDimensions();
        var columns = (int)image.GetDimension(0);
        var rows = (int)image.GetDimension(1);
        var frames = dimensions > 2 ? (int)image.GetDimension(2) : 1;
        var samples = format.GetSamplesPerPixel();
        var allocated = format.GetBitsAllocated();
        var computed = (long)columns * rows * frames * samples * (allocated / 8);
        // GetBufferLength is 32-bit; compare with what the checked header says before allocating anything.
        if (computed != expectedBytes || image.GetBufferLength() != expectedBytes || expectedBytes > Array.MaxLength)
        {
            return (null, DecodeFailure.Inconsistent);
        }
        var buffer = GC.AllocateUninitializedArray<byte>((int)expectedBytes);
        if (!image.GetBuffer(buffer))
        {
            return (null, DecodeFailure.CodecFailed);
        }
        using var photometric = image.GetPhotometricInterpretation();
        return (new DecodedPixels(columns, rows, frames, samples, allocated, format.GetBitsStored(), format.GetHighBit(),
            format.GetPixelRepresentation(), (int)image.GetPlanarConfiguration(), photometric.GetString()?.Trim() ?? "", buffer), DecodeFailure.None);
    }

    /// <summary>GDCM's warnings and errors go to stderr and may quote the file: off.</summary>
    internal static void Quiet()
    {
        lock (Once)
        {
            if (!_quiet)
            {
                gdcm.Trace.WarningOff();
                gdcm.Trace.ErrorOff();
                gdcm.Trace.DebugOff();
                _quiet = true;
            }
        }
    }

    /// <summary>An anonymous in-memory file (Linux <c>memfd_create</c>) holding the bytes, readable by name through /proc.</summary>
    internal sealed partial class MemoryFile : IDisposable
    {
        private const uint CloseOnExec = 1;
        private readonly SafeFileHandle _handle;

        private MemoryFile(SafeFileHandle handle, string path)
        {
            _handle = handle;
            Path = path;
        }

        public string Path { get; }

        public static MemoryFile Create(ReadOnlySpan<byte> bytes)
        {
            var fd = MemfdCreate("medserve-dicom", CloseOnExec);
            if (fd < 0)
            {
                throw new IOException($"memfd_create failed (errno {Marshal.GetLastPInvokeError()})");
            }
            var handle = new SafeFileHandle(fd, ownsHandle: true);
            try
            {
                RandomAccess.Write(handle, bytes, 0);
            }
            catch
            {
                handle.Dispose();
                throw;
            }
            return new MemoryFile(handle, $"/proc/self/fd/{fd}");
        }

        /// <summary>The file's whole content as it is now (after a writer wrote it).</summary>
        public byte[] ReadAll()
        {
            var length = RandomAccess.GetLength(_handle);
            var bytes = new byte[checked((int)length)];
            var read = 0;
            while (read < bytes.Length)
            {
                var n = RandomAccess.Read(_handle, bytes.AsSpan(read), read);
                if (n == 0)
                {
                    break;
                }
                read += n;
            }
            return read == bytes.Length ? bytes : bytes[..read];
        }

        public void Dispose() => _handle.Dispose();

        [LibraryImport("libc", EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        private static partial int MemfdCreate(string name, uint flags);
    }
}
