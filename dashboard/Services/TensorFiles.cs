using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace MedServe.Dashboard.Services;

/// <summary>A tensor read from a file: float32 values, row-major, and its shape.</summary>
public sealed record TensorFile(float[] Values, long[] Shape);

/// <summary>
/// Reads image tensors that people upload on the Try-it page: NumPy <c>.npy</c> (little-endian float32 or float64, C
/// order) or raw little-endian float32 (<c>.f32</c>), whose shape comes from a <c>_NxCxHxW</c> suffix in the file
/// name or, failing that, from the model's input shape.
/// </summary>
public static partial class TensorFiles
{
    [GeneratedRegex(@"(\d+(?:x\d+)+)\.f32$", RegexOptions.IgnoreCase)]
    private static partial Regex ShapeSuffix();

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex Descr();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranOrder();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeTuple();

    /// <summary>Whether a file is DICOM Part 10: named <c>.dcm</c>, or <c>DICM</c> after its 128-byte preamble.</summary>
    public static bool IsDicom(string fileName, byte[] bytes) =>
        fileName.EndsWith(".dcm", StringComparison.OrdinalIgnoreCase) || (bytes.Length > 132 && bytes.AsSpan(128, 4).SequenceEqual("DICM"u8));

    public static TensorFile Read(string fileName, byte[] bytes, long[] modelShape)
    {
        if (fileName.EndsWith(".npy", StringComparison.OrdinalIgnoreCase) || bytes.AsSpan().StartsWith("\x93NUMPY"u8))
        {
            return ReadNpy(bytes);
        }
        if (!fileName.EndsWith(".f32", StringComparison.OrdinalIgnoreCase))
        {
            throw MedServeException.Invalid("send a .npy file or raw little-endian float32 values (.f32)", "file");
        }
        if (bytes.Length % 4 != 0)
        {
            throw MedServeException.Invalid($"a .f32 file holds 4-byte values; this one has {bytes.Length} bytes", "file");
        }
        var values = ToFloats(bytes, 4, little: true);
        long[] shape;
        if (ShapeSuffix().Match(fileName) is { Success: true } m)
        {
            shape = [.. m.Groups[1].Value.Split('x').Select(d => long.Parse(d, CultureInfo.InvariantCulture))];
        }
        else
        {
            shape = InferShape(values.Length, modelShape);
        }
        Check(values.Length, shape);
        return new TensorFile(values, shape);
    }

    /// <summary>The model's shape with its dynamic dimensions filled in from the element count (square images when height and width are both dynamic).</summary>
    private static long[] InferShape(long count, long[] modelShape)
    {
        var shape = (long[])modelShape.Clone();
        long fixedPart = shape.Skip(1).Where(d => d > 0).Aggregate(1L, (a, b) => a * b);
        var dynamicInner = shape.Skip(1).Count(d => d < 0);
        if (dynamicInner == 2 && shape.Length == 4)
        {
            var side = (long)Math.Round(Math.Sqrt(count / (double)fixedPart));
            shape[2] = shape[3] = side;
            fixedPart *= side * side;
        }
        else if (dynamicInner > 0)
        {
            throw MedServeException.Invalid($"cannot tell the shape of this file for input shape [{string.Join(",", modelShape)}]: name it like image_1x1x64x64.f32 or send a .npy", "file");
        }
        shape[0] = fixedPart == 0 ? 0 : count / fixedPart;
        return shape;
    }

    private static TensorFile ReadNpy(byte[] bytes)
    {
        if (bytes.Length < 10 || !bytes.AsSpan().StartsWith("\x93NUMPY"u8))
        {
            throw MedServeException.Invalid("not a .npy file (no NUMPY magic)", "file");
        }
        int major = bytes[6];
        var headerLength = major == 1 ? BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8)) : (int)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
        var start = major == 1 ? 10 : 12;
        if (start + headerLength > bytes.Length)
        {
            throw MedServeException.Invalid("the .npy header is truncated", "file");
        }
        var header = Encoding.ASCII.GetString(bytes, start, headerLength);
        var descr = Descr().Match(header).Groups[1].Value;
        if (FortranOrder().Match(header).Groups[1].Value == "True")
        {
            throw MedServeException.Invalid("the .npy array is in Fortran order; save it in C order (np.ascontiguousarray)", "file");
        }
        var shape = ShapeTuple().Match(header).Groups[1].Value
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(d => long.Parse(d, CultureInfo.InvariantCulture)).ToArray();
        var body = bytes.AsSpan(start + headerLength).ToArray();
        var values = descr switch
        {
            "<f4" or "|f4" => ToFloats(body, 4, little: true),
            ">f4" => ToFloats(body, 4, little: false),
            "<f8" => ToFloats(body, 8, little: true),
            ">f8" => ToFloats(body, 8, little: false),
            _ => throw MedServeException.Invalid($"the .npy dtype is '{descr}'; send float32 or float64", "file"),
        };
        Check(values.Length, shape);
        return new TensorFile(values, shape);
    }

    private static float[] ToFloats(byte[] bytes, int width, bool little)
    {
        var values = new float[bytes.Length / width];
        for (var i = 0; i < values.Length; i++)
        {
            var span = bytes.AsSpan(i * width, width);
            values[i] = width == 4
                ? (little ? BinaryPrimitives.ReadSingleLittleEndian(span) : BinaryPrimitives.ReadSingleBigEndian(span))
                : (float)(little ? BinaryPrimitives.ReadDoubleLittleEndian(span) : BinaryPrimitives.ReadDoubleBigEndian(span));
        }
        return values;
    }

    private static void Check(long count, long[] shape)
    {
        var expected = shape.Aggregate(1L, (a, b) => a * b);
        if (expected != count || shape.Any(d => d <= 0))
        {
            throw MedServeException.Invalid($"the file holds {count} values, which does not fit shape [{string.Join(",", shape)}]", "file");
        }
    }

    /// <summary>
    /// An image as 0-255 gray levels for display, windowed: <paramref name="level"/> ± <paramref name="width"/>/2
    /// maps to black..white; with no window, the 1st to 99th percentile of the image does.
    /// </summary>
    public static byte[] Window(ReadOnlySpan<float> image, double? level, double? width)
    {
        double lo, hi;
        if (level is { } l && width is { } w && w > 0)
        {
            lo = l - (w / 2);
            hi = l + (w / 2);
        }
        else
        {
            var sorted = image.ToArray();
            Array.Sort(sorted);
            lo = sorted[(int)(0.01 * (sorted.Length - 1))];
            hi = sorted[(int)(0.99 * (sorted.Length - 1))];
            if (hi <= lo)
            {
                hi = lo + 1;
            }
        }
        var gray = new byte[image.Length];
        for (var i = 0; i < image.Length; i++)
        {
            gray[i] = (byte)Math.Clamp((image[i] - lo) / (hi - lo) * 255.0, 0, 255);
        }
        return gray;
    }
}
