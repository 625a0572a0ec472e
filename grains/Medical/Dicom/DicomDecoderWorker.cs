using System.Buffers.Binary;
using System.Text;

namespace MedServe.Medical.Dicom;

/// <summary>
/// The decoder worker process: reads requests (a Part 10 file and the pixel bytes its checked header declares, or a file
/// and a key to de-identify it with) from stdin, runs GDCM on each (<see cref="GdcmDecoder"/>,
/// <see cref="DicomDeidentifier"/>) and writes the answer to stdout, until stdin closes. A crash
/// here (GDCM aborts on some malformed input) ends this process, not the server. The host program runs it when started
/// with <see cref="Switch"/> as its only argument.
/// </summary>
public static class DicomDecoderWorker
{
    /// <summary>The command-line switch that turns the host program into a decoder worker.</summary>
    public const string Switch = "--dicom-decoder-worker";

    internal const uint Magic = 0x5744534D; // "MSDW": decode
    internal const uint DeidentifyMagic = 0x4944534D; // "MSDI": de-identify (the 8-byte field is the key's length, the key precedes the file)

    /// <summary>Serves requests until <paramref name="input"/> ends; returns the process exit code.</summary>
    public static int Run(Stream input, Stream output)
    {
        var header = new byte[16];
        while (true)
        {
            if (!ReadExactly(input, header))
            {
                return 0;
            }
            var magic = BinaryPrimitives.ReadUInt32LittleEndian(header);
            var expected = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(4));
            var length = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(12));
            if (magic == DeidentifyMagic && length >= 0 && expected is >= DicomDeidentifier.MinKeyBytes and <= 1024)
            {
                if (!Deidentify(input, output, (int)expected, length))
                {
                    return 2;
                }
                continue;
            }
            if (magic != Magic || length < 0 || expected < 0)
            {
                return 2;
            }
            var file = GC.AllocateUninitializedArray<byte>(length);
            if (!ReadExactly(input, file))
            {
                return 2;
            }
            DecodedPixels? pixels;
            DecodeFailure failure;
            try
            {
                (pixels, failure) = GdcmDecoder.Decode(file, expected);
            }
            catch (Exception e) when (e is ApplicationException or SystemException)
            {
                // SWIG turns C++ exceptions into ApplicationException; nothing of the file is reported.
                (pixels, failure) = (null, DecodeFailure.CodecFailed);
            }
            Array.Clear(file);
            WriteAnswer(output, pixels, failure);
            if (pixels is not null)
            {
                Array.Clear(pixels.Buffer);
            }
        }
    }

    private static bool Deidentify(Stream input, Stream output, int keyLength, int length)
    {
        var key = new byte[keyLength];
        var file = GC.AllocateUninitializedArray<byte>(length);
        if (!ReadExactly(input, key) || !ReadExactly(input, file))
        {
            return false;
        }
        byte[]? result;
        DicomDeidentifier.Refusal refusal;
        try
        {
            (result, refusal) = DicomDeidentifier.Deidentify(file, key);
        }
        catch (Exception e) when (e is ApplicationException or SystemException)
        {
            (result, refusal) = (null, DicomDeidentifier.Refusal.Unreadable);
        }
        Array.Clear(file);
        Array.Clear(key);
        var status = refusal switch
        {
            DicomDeidentifier.Refusal.None => DecodeFailure.None,
            DicomDeidentifier.Refusal.BurnedInAnnotation => DecodeFailure.BurnedInAnnotation,
            DicomDeidentifier.Refusal.WriteFailed => DecodeFailure.WriteFailed,
            _ => DecodeFailure.Unreadable,
        };
        output.WriteByte((byte)status);
        if (result is not null)
        {
            var size = new byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(size, result.LongLength);
            output.Write(size);
            output.Write(result);
        }
        output.Flush();
        return true;
    }

    private static void WriteAnswer(Stream output, DecodedPixels? pixels, DecodeFailure failure)
    {
        if (pixels is null)
        {
            output.WriteByte((byte)(failure == DecodeFailure.None ? DecodeFailure.CodecFailed : failure));
            output.Flush();
            return;
        }
        var photometric = Encoding.ASCII.GetBytes(pixels.Photometric.Length > 64 ? pixels.Photometric[..64] : pixels.Photometric);
        var head = new byte[1 + 9 * 4 + 4 + photometric.Length + 8];
        var span = head.AsSpan();
        span[0] = (byte)DecodeFailure.None;
        var at = 1;
        foreach (var v in new[] { pixels.Columns, pixels.Rows, pixels.Frames, pixels.SamplesPerPixel, pixels.BitsAllocated, pixels.BitsStored, pixels.HighBit, pixels.PixelRepresentation, pixels.PlanarConfiguration, photometric.Length })
        {
            BinaryPrimitives.WriteInt32LittleEndian(span[at..], v);
            at += 4;
        }
        photometric.CopyTo(span[at..]);
        at += photometric.Length;
        BinaryPrimitives.WriteInt64LittleEndian(span[at..], pixels.Buffer.LongLength);
        output.Write(head);
        output.Write(pixels.Buffer);
        output.Flush();
    }

    /// <summary>Fills <paramref name="buffer"/>; false when the stream ends first.</summary>
    internal static bool ReadExactly(Stream stream, Span<byte> buffer)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = stream.Read(buffer[read..]);
            if (n == 0)
            {
                return false;
            }
            read += n;
        }
        return true;
    }
}
