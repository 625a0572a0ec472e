using System.Runtime.InteropServices;

namespace MedServe.Medical.Dicom;

/// <summary>Limits on one DICOM request: decoded pixel bytes per file (<c>MaxDicomPixelBytes</c>) and the tensor's elements (<c>MaxTensorElements</c>).</summary>
public sealed record DicomInputLimits(long MaxPixelBytes, long MaxTensorElements);

/// <summary>The input tensor made of a DICOM request, and which file (by its position in the request) each row came from.</summary>
public sealed record DicomTensor(Tensor Tensor, int[] RowFiles);

/// <summary>
/// Turns one DICOM Part 10 file, or the files of one series, into the tensor of a model's image input as its
/// <see cref="ImageSchema"/> says: every header is checked first (structure, transfer syntax, sizes, modality, colour)
/// before any pixel is decoded; files are put in instance order (Instance Number (0020,0013), then Image Position
/// (Patient) (0020,0032) along the slice normal, then the order sent); then each file is decoded in a worker process
/// (<see cref="DicomDecoderPool"/>) and every frame becomes one row: modality LUT, colour, window, resize, normalisation.
/// </summary>
public sealed class DicomImageInput(DicomDecoderPool decoder)
{
    /// <summary>Builds the tensor for <paramref name="input"/> of <paramref name="model"/> (named in errors).</summary>
    public async Task<DicomTensor> BuildAsync(IReadOnlyList<ReadOnlyMemory<byte>> files, string model, TensorSpec input, DicomInputLimits limits, CancellationToken cancellationToken)
    {
        var schema = input.Image ?? throw MedServeException.Unsupported($"{model} does not take DICOM: its input '{input.Name}' declares no image schema", "Content-Type");
        if (files.Count == 0)
        {
            throw MedServeException.Invalid("the request holds no DICOM file", "body");
        }
        var headers = new DicomHeader[files.Count];
        for (var i = 0; i < files.Count; i++)
        {
            headers[i] = Named(files.Count, i, () =>
            {
                var header = DicomParser.Parse(files[i], limits.MaxPixelBytes);
                Accept(header, schema, model, input);
                return header;
            });
        }
        if (headers.Select(h => h.SeriesInstanceUid).Where(s => s is not null).Distinct(StringComparer.Ordinal).Count() > 1)
        {
            throw MedServeException.Invalid("the files belong to different series (Series Instance UID (0020,000E)); send one series per request", "(0020,000E)");
        }
        var order = Order(headers);

        var layout = schema.Layout;
        var (hDim, wDim, _) = Protocol.ImageSchemaCheck.Dimensions(layout);
        var channels = PixelPlanes.Channels(schema);
        var height = Target(input.Shape[hDim], schema.Height, headers, h => h.Rows, "height", "Rows (0028,0010)", schema.Resize, model);
        var width = Target(input.Shape[wDim], schema.Width, headers, h => h.Columns, "width", "Columns (0028,0011)", schema.Resize, model);
        long rows = headers.Sum(h => (long)h.Frames);
        var elements = rows * channels * height * width;
        if (elements > limits.MaxTensorElements)
        {
            throw new MedServeException(ErrorKind.TooLarge,
                $"{rows} frame(s) of {height}x{width}x{channels} make {elements} tensor elements; the limit is {limits.MaxTensorElements} (MedServe:Limits:MaxTensorElements)", "body");
        }

        var data = new byte[checked(elements * sizeof(float))];
        var rowFiles = new int[rows];
        var row = 0;
        foreach (var f in order)
        {
            var header = headers[f];
            var pixels = await NamedAsync(files.Count, f, () => decoder.DecodeAsync(files[f], header, cancellationToken));
            if (pixels.Rows != header.Rows || pixels.Columns != header.Columns || pixels.Frames != header.Frames || pixels.SamplesPerPixel != header.SamplesPerPixel)
            {
                throw Named(files.Count, f, MedServeException.Invalid("the decoded image does not match its header (Rows, Columns, Number of Frames or Samples per Pixel)", "(7FE0,0010)"));
            }
            Fill(pixels, header, schema, MemoryMarshal.Cast<byte, float>(data.AsSpan()), ref row, rowFiles, f, height, width, channels);
            Array.Clear(pixels.Buffer);
        }
        long[] shape = layout == ImageLayout.Nhwc ? [rows, height, width, channels] : [rows, channels, height, width];
        return new DicomTensor(new Tensor(input.Name, TensorDatatype.FP32, shape, data), rowFiles);
    }

    /// <summary>Checks a header against the model's schema before anything is decoded.</summary>
    public static void Accept(DicomHeader header, ImageSchema schema, string model, TensorSpec input)
    {
        var accepted = string.Join(", ", schema.Modalities);
        if (header.Modality is null)
        {
            throw MedServeException.Invalid($"the file has no Modality (0008,0060); {model} accepts {accepted}", "(0008,0060)");
        }
        if (!schema.Modalities.Contains(header.Modality, StringComparer.Ordinal))
        {
            var named = ModalityTerms.IsStandard(header.Modality) ? $"modality {header.Modality}" : "the file's modality";
            throw MedServeException.Invalid($"{named} (0008,0060) is not accepted by {model}, which accepts {accepted}", "(0008,0060)");
        }
        var colour = header.SamplesPerPixel == 3;
        if (colour && schema.Color == ImageColorMode.Reject)
        {
            throw MedServeException.Invalid(
                $"the image is colour ({header.Photometric}, 3 samples per pixel) and {model}'s input '{input.Name}' takes one grey channel; its image schema does not say how to convert (color: reject)", "(0028,0004)");
        }
        if (!colour && schema.Color == ImageColorMode.Rgb)
        {
            throw MedServeException.Invalid($"the image is monochrome ({header.Photometric}) and {model}'s input '{input.Name}' takes RGB (color: rgb)", "(0028,0004)");
        }
        if (header.Photometric == "MONOCHROME1" && schema.Monochrome1 == Monochrome1Mode.Reject)
        {
            throw MedServeException.Invalid($"the image is MONOCHROME1 and {model} refuses it (monochrome1: reject)", "(0028,0004)");
        }
        if (schema.Rescale && !colour)
        {
            if (header.HasModalityLutSequence)
            {
                throw MedServeException.Invalid("the image's modality LUT is a Modality LUT Sequence (0028,3000), which is not supported (only Rescale Slope and Intercept)", "(0028,3000)");
            }
            if (header.HasFunctionalGroups && header.RescaleSlope is null && header.RescaleIntercept is null)
            {
                throw MedServeException.Invalid("the image is an enhanced multi-frame object whose rescale lives in its functional groups (5200,9229)/(5200,9230), which are not supported", "(5200,9229)");
            }
        }
    }

    /// <summary>Row order of the files: Instance Number, then position along the slice normal, then the order sent.</summary>
    public static int[] Order(IReadOnlyList<DicomHeader> headers) =>
        [.. Enumerable.Range(0, headers.Count)
            .OrderBy(i => headers[i].InstanceNumber is null ? 1 : 0)
            .ThenBy(i => headers[i].InstanceNumber ?? 0)
            .ThenBy(i => headers[i].PositionAlongNormal is null ? 1 : 0)
            .ThenBy(i => headers[i].PositionAlongNormal ?? 0)
            .ThenBy(i => i)];

    private static int Target(long fixedSize, int? declared, DicomHeader[] headers, Func<DicomHeader, int> own, string name, string tag, string resize, string model)
    {
        var size = fixedSize > 0 ? (int)fixedSize : declared;
        if (size is { } s)
        {
            if (resize == ImageResizeMethod.None && headers.Any(h => own(h) != s))
            {
                throw MedServeException.Invalid($"{tag} is {headers.Select(own).First(v => v != s)} but {model} takes {name} {s} and its image schema does not resize (resize: none)", tag);
            }
            return s;
        }
        // Dynamic and no resize: every image keeps its own size, so they must agree.
        var first = own(headers[0]);
        if (headers.Any(h => own(h) != first))
        {
            throw MedServeException.Invalid($"the files differ in {tag} and {model}'s image schema does not resize (resize: none)", tag);
        }
        return first;
    }

    private static void Fill(DecodedPixels pixels, DicomHeader header, ImageSchema schema, Span<float> output, ref int row, int[] rowFiles, int file, int height, int width, int channels)
    {
        var n = header.Rows * header.Columns;
        var planes = new float[channels * n];
        var resized = new float[height * width];
        var window = schema.Window;
        var (low, high) = window is { } w ? ((float)(w.Center - w.Width / 2), (float)(w.Center + w.Width / 2)) : (float.NegativeInfinity, float.PositiveInfinity);
        var (scale, offset) = schema.Normalize is { } norm ? ((float)norm.Scale, (float)norm.Offset) : (1f, 0f);
        var identity = scale == 1f && offset == 0f;
        var plane = height * width;
        for (var frame = 0; frame < header.Frames; frame++, row++)
        {
            rowFiles[row] = file;
            PixelPlanes.Frame(pixels, header, schema, frame, planes);
            for (var c = 0; c < channels; c++)
            {
                var source = planes.AsSpan(c * n, n);
                if (window is not null)
                {
                    for (var i = 0; i < source.Length; i++)
                    {
                        source[i] = Math.Clamp(source[i], low, high);
                    }
                }
                ImageResize.Resize(source, header.Rows, header.Columns, resized, height, width, schema.Resize);
                if (!identity)
                {
                    for (var i = 0; i < resized.Length; i++)
                    {
                        resized[i] = resized[i] * scale + offset;
                    }
                }
                if (schema.Layout == ImageLayout.Nhwc)
                {
                    var baseIndex = (long)row * plane * channels;
                    for (var i = 0; i < plane; i++)
                    {
                        output[(int)(baseIndex + (long)i * channels + c)] = resized[i];
                    }
                }
                else
                {
                    resized.AsSpan().CopyTo(output.Slice((int)(((long)row * channels + c) * plane), plane));
                }
            }
        }
    }

    private static T Named<T>(int count, int index, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (MedServeException e) when (count > 1)
        {
            throw Named(count, index, e);
        }
    }

    private static async Task<T> NamedAsync<T>(int count, int index, Func<Task<T>> action)
    {
        try
        {
            return await action();
        }
        catch (MedServeException e) when (count > 1)
        {
            throw Named(count, index, e);
        }
    }

    private static MedServeException Named(int count, int index, MedServeException e) =>
        count > 1 ? new MedServeException(e.Kind, $"part {index + 1}: {e.Message}", e.Field) : e;
}

/// <summary>The defined terms of Modality (0008,0060) (PS3.3 C.7.3.1.1.1), which an error may name; anything else is not echoed.</summary>
public static class ModalityTerms
{
    private static readonly HashSet<string> Standard =
    [
        "ANN", "AR", "ASMT", "AU", "BDUS", "BI", "BMD", "CFM", "CR", "CT", "CTPROTOCOL", "DMS", "DG", "DOC", "DX", "ECG", "EEG", "EMG",
        "EOG", "EPS", "ES", "FID", "GM", "HC", "HD", "IO", "IOL", "IVOCT", "IVUS", "KER", "KO", "LEN", "LS", "MG", "MR", "M3D", "NM",
        "OAM", "OCT", "OP", "OPM", "OPT", "OPTBSV", "OPTENF", "OPV", "OSS", "OT", "PA", "PLAN", "POS", "PR", "PT", "PX", "REG", "RESP",
        "RF", "RG", "RTDOSE", "RTIMAGE", "RTINTENT", "RTPLAN", "RTRAD", "RTRECORD", "RTSEGANN", "RTSTRUCT", "RWV", "SEG", "SM", "SMR",
        "SR", "SRF", "STAIN", "TEXTUREMAP", "TG", "US", "VA", "XA", "XAPROTOCOL", "XC",
    ];

    public static bool IsStandard(string modality) => Standard.Contains(modality);
}
