namespace MedServe;

/// <summary>
/// How a DICOM image becomes the tensor of an input (manifest field <c>image</c> on an input): the preprocessing the
/// model was trained with, applied by the server to every frame of a file and every file of a series. In order:
/// stored values → <see cref="Monochrome1"/> → modality LUT (<see cref="Rescale"/>) → colour (<see cref="Color"/>) →
/// <see cref="Window"/> (clamp) → <see cref="Resize"/> to <c>height</c> x <c>width</c> → <see cref="Normalize"/>
/// (<c>x * scale + offset</c>) → <see cref="Layout"/>; each frame or slice is one row of the batch dimension
/// (<see cref="Batch"/>).
/// </summary>
[GenerateSerializer, Immutable, Alias("medserve.image-schema")]
public sealed record ImageSchema
{
    /// <summary>Modalities (0008,0060) the model accepts, e.g. <c>CT</c>, <c>MR</c>; any other is refused (400).</summary>
    [Id(0)] public string[] Modalities { get; init; } = [];

    /// <summary>Apply the modality LUT: rescale slope (0028,1053) and intercept (0028,1052), so CT is in Hounsfield units.</summary>
    [Id(1)] public bool Rescale { get; init; } = true;

    /// <summary>Optional window: values are clamped to <c>[center - width/2, center + width/2]</c> (in modality units) before the resize.</summary>
    [Id(2)] public ImageWindow? Window { get; init; }

    /// <summary>
    /// <see cref="ImageResizeMethod.BilinearAntialias"/> (PyTorch <c>interpolate(mode="bilinear", align_corners=False,
    /// antialias=True)</c>), <see cref="ImageResizeMethod.Bilinear"/> (the same without antialias) or
    /// <see cref="ImageResizeMethod.None"/> (the image must already have the input's size).
    /// </summary>
    [Id(3)] public string Resize { get; init; } = ImageResizeMethod.BilinearAntialias;

    /// <summary>Height to resize to; needed only when the input's height is dynamic (must equal it when fixed).</summary>
    [Id(4)] public int? Height { get; init; }

    /// <summary>Width to resize to; needed only when the input's width is dynamic (must equal it when fixed).</summary>
    [Id(5)] public int? Width { get; init; }

    /// <summary>Linear normalisation after the resize, <c>x * scale + offset</c>; absent means identity.</summary>
    [Id(6)] public ImageNormalize? Normalize { get; init; }

    /// <summary><see cref="ImageLayout.Nchw"/> or <see cref="ImageLayout.Nhwc"/>: where the channel dimension is.</summary>
    [Id(7)] public string Layout { get; init; } = ImageLayout.Nchw;

    /// <summary>What to do with colour images (RGB, YBR_FULL): <see cref="ImageColorMode.Reject"/>, <see cref="ImageColorMode.Luminance"/> or <see cref="ImageColorMode.Rgb"/>.</summary>
    [Id(8)] public string Color { get; init; } = ImageColorMode.Reject;

    /// <summary>What to do with MONOCHROME1 images (minimum is white): <see cref="Monochrome1Mode.Keep"/>, <see cref="Monochrome1Mode.Invert"/> or <see cref="Monochrome1Mode.Reject"/>.</summary>
    [Id(9)] public string Monochrome1 { get; init; } = Monochrome1Mode.Keep;

    /// <summary>How frames and files map onto the batch dimension: <see cref="ImageBatchMode.Frames"/> (each frame or slice one row).</summary>
    [Id(10)] public string Batch { get; init; } = ImageBatchMode.Frames;
}

/// <summary>A window in modality units (after rescale): values are clamped to <c>[center - width/2, center + width/2]</c>.</summary>
[GenerateSerializer, Immutable, Alias("medserve.image-window")]
public sealed record ImageWindow
{
    [Id(0)] public double Center { get; init; }
    [Id(1)] public double Width { get; init; }
}

/// <summary>Linear normalisation <c>x * scale + offset</c> (a mean/std normalisation is scale = 1/std, offset = -mean/std).</summary>
[GenerateSerializer, Immutable, Alias("medserve.image-normalize")]
public sealed record ImageNormalize
{
    [Id(0)] public double Scale { get; init; } = 1;
    [Id(1)] public double Offset { get; init; }
}

/// <summary>Values of <see cref="ImageSchema.Resize"/>.</summary>
public static class ImageResizeMethod
{
    public const string BilinearAntialias = "bilinear_antialias";
    public const string Bilinear = "bilinear";
    public const string None = "none";
    public static readonly string[] All = [BilinearAntialias, Bilinear, None];
}

/// <summary>Values of <see cref="ImageSchema.Layout"/>.</summary>
public static class ImageLayout
{
    public const string Nchw = "NCHW";
    public const string Nhwc = "NHWC";
    public static readonly string[] All = [Nchw, Nhwc];
}

/// <summary>Values of <see cref="ImageSchema.Color"/>.</summary>
public static class ImageColorMode
{
    /// <summary>A colour image is refused (400) naming the field.</summary>
    public const string Reject = "reject";
    /// <summary>A colour image becomes one channel, 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601, as PIL's convert("L")).</summary>
    public const string Luminance = "luminance";
    /// <summary>Three channels R, G, B (the input has 3 channels); a monochrome image is refused.</summary>
    public const string Rgb = "rgb";
    public static readonly string[] All = [Reject, Luminance, Rgb];
}

/// <summary>Values of <see cref="ImageSchema.Monochrome1"/>.</summary>
public static class Monochrome1Mode
{
    /// <summary>Use the values as stored (after rescale they are the modality's own units, as pydicom gives them).</summary>
    public const string Keep = "keep";
    /// <summary>Invert stored values within their range (minimum ↔ maximum of Bits Stored) before the rescale, as a display would.</summary>
    public const string Invert = "invert";
    /// <summary>Refuse MONOCHROME1 images (400).</summary>
    public const string Reject = "reject";
    public static readonly string[] All = [Keep, Invert, Reject];
}

/// <summary>Values of <see cref="ImageSchema.Batch"/>.</summary>
public static class ImageBatchMode
{
    /// <summary>Every frame of a multi-frame file and every file of a series is one row, in instance order.</summary>
    public const string Frames = "frames";
    public static readonly string[] All = [Frames];
}
