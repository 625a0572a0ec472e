using System.Buffers.Binary;

namespace MedServe.Medical.Dicom;

/// <summary>
/// Turns decoded pixel data into float planes: the stored value of each sample (only the Bits Stored bits at High Bit,
/// sign-extended when Pixel Representation is 1), MONOCHROME1 inverted when the schema says so, the modality LUT
/// (<c>value * slope + intercept</c>, in double, as pydicom's <c>apply_modality_lut</c>), and colour converted to what
/// the schema asks for (luminance, or R, G, B planes).
/// </summary>
public static class PixelPlanes
{
    /// <summary>Planes per frame the schema makes of an image: 3 for <c>rgb</c>, else 1.</summary>
    public static int Channels(ImageSchema schema) => schema.Color == ImageColorMode.Rgb ? 3 : 1;

    /// <summary>
    /// Writes frame <paramref name="frame"/> into <paramref name="planes"/> (channels x rows x columns). The header gives the
    /// modality LUT; the decoded pixels their format (GDCM may have changed the photometric interpretation, e.g. YBR to RGB).
    /// </summary>
    public static void Frame(DecodedPixels pixels, DicomHeader header, ImageSchema schema, int frame, Span<float> planes)
    {
        var n = pixels.Rows * pixels.Columns;
        var samples = pixels.SamplesPerPixel;
        var bytes = pixels.BitsAllocated / 8;
        var frameBytes = (long)n * samples * bytes;
        var data = pixels.Buffer.AsSpan(checked((int)(frameBytes * frame)), checked((int)frameBytes));
        var (slope, intercept) = ModalityLut(header, schema);
        if (samples == 1)
        {
            var invert = pixels.Photometric == "MONOCHROME1" && schema.Monochrome1 == Monochrome1Mode.Invert;
            var target = planes[..n];
            for (var i = 0; i < n; i++)
            {
                var v = Stored(data, i, pixels);
                if (invert)
                {
                    v = Inverted(v, pixels);
                }
                target[i] = (float)(v * slope + intercept);
            }
            if (Channels(schema) == 3)
            {
                throw new InvalidOperationException("a monochrome image for an RGB input is refused before decoding");
            }
            return;
        }
        // Colour: R, G, B (or Y, Cb, Cr) by pixel or by plane; GDCM decodes YBR_ICT/YBR_RCT to RGB.
        var planar = pixels.PlanarConfiguration == 1;
        var ybr = pixels.Photometric is "YBR_FULL" or "YBR_FULL_422";
        var luminance = schema.Color == ImageColorMode.Luminance;
        for (var i = 0; i < n; i++)
        {
            double a = Stored(data, planar ? i : i * 3, pixels);
            double b = Stored(data, planar ? n + i : i * 3 + 1, pixels);
            double c = Stored(data, planar ? 2 * n + i : i * 3 + 2, pixels);
            if (ybr)
            {
                // ITU-R BT.601 full range (PS3.3 C.7.6.3.1.2), as pydicom's convert_color_space.
                var mid = 1 << (pixels.BitsStored - 1);
                var (y, cb, cr) = (a, b - mid, c - mid);
                (a, b, c) = (y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb);
            }
            if (luminance)
            {
                planes[i] = (float)(0.299 * a + 0.587 * b + 0.114 * c);
            }
            else
            {
                planes[i] = (float)a;
                planes[n + i] = (float)b;
                planes[2 * n + i] = (float)c;
            }
        }
    }

    /// <summary>The modality LUT the schema and header call for: slope and intercept, identity when absent or when rescale is off.</summary>
    public static (double Slope, double Intercept) ModalityLut(DicomHeader header, ImageSchema schema) =>
        schema.Rescale && header.SamplesPerPixel == 1
            ? (header.RescaleSlope ?? 1, header.RescaleIntercept ?? 0)
            : (1, 0);

    private static double Stored(ReadOnlySpan<byte> data, int index, DecodedPixels p)
    {
        long raw = p.BitsAllocated switch
        {
            8 => p.PixelRepresentation == 1 ? (sbyte)data[index] : data[index],
            16 => p.PixelRepresentation == 1
                ? BinaryPrimitives.ReadInt16LittleEndian(data[(index * 2)..])
                : BinaryPrimitives.ReadUInt16LittleEndian(data[(index * 2)..]),
            _ => p.PixelRepresentation == 1
                ? BinaryPrimitives.ReadInt32LittleEndian(data[(index * 4)..])
                : BinaryPrimitives.ReadUInt32LittleEndian(data[(index * 4)..]),
        };
        if (p.BitsStored >= p.BitsAllocated)
        {
            return raw;
        }
        // Only Bits Stored bits, ending at High Bit, are the value (the rest may hold overlays or noise).
        var shift = p.HighBit + 1 - p.BitsStored;
        var mask = (1L << p.BitsStored) - 1;
        var value = ((raw & ((1L << p.BitsAllocated) - 1)) >> shift) & mask;
        if (p.PixelRepresentation == 1 && (value & (1L << (p.BitsStored - 1))) != 0)
        {
            value -= 1L << p.BitsStored;
        }
        return value;
    }

    private static double Inverted(double stored, DecodedPixels p) => p.PixelRepresentation == 1
        ? -1 - stored                                  // [-2^(b-1), 2^(b-1)-1]: min + max = -1
        : ((1L << p.BitsStored) - 1) - stored;         // [0, 2^b - 1]
}
