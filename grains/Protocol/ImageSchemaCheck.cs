using System.Globalization;

namespace MedServe.Protocol;

/// <summary>
/// Checks a manifest's image schemas (<see cref="ImageSchema"/>) against the inputs that carry them: only an FP32 rank-4
/// input may take images, the channel dimension must fit the colour mode, and the size to resize to must fit the input's
/// height and width. Errors name the field (<c>manifest.inputs[0].image.height</c>).
/// </summary>
public static class ImageSchemaCheck
{
    /// <summary>Checks every input's and output's image schema; at most one input may take images.</summary>
    public static void Check(ModelManifest m)
    {
        string? first = null;
        for (var i = 0; i < m.Inputs.Length; i++)
        {
            if (m.Inputs[i].Image is { } image)
            {
                var at = $"manifest.inputs[{i}].image";
                if (first is not null)
                {
                    throw MedServeException.Invalid($"{at}: only one input may take images, and {first} already does", at);
                }
                first = at;
                Check(m.Inputs[i], image, at);
            }
        }
        for (var i = 0; i < m.Outputs.Length; i++)
        {
            if (m.Outputs[i].Image is not null)
            {
                throw MedServeException.Invalid($"manifest.outputs[{i}].image: only inputs take an image schema", $"manifest.outputs[{i}].image");
            }
        }
    }

    /// <summary>The dimensions of height, width and channels in an input of <paramref name="layout"/>.</summary>
    public static (int Height, int Width, int Channels) Dimensions(string layout) => layout == ImageLayout.Nhwc ? (1, 2, 3) : (2, 3, 1);

    private static void Check(TensorSpec spec, ImageSchema s, string at)
    {
        if (s.Modalities is null || s.Modalities.Length == 0 || s.Modalities.Any(x => !IsModalityTerm(x)))
        {
            throw MedServeException.Invalid($"{at}.modalities must list the modalities (0008,0060) the model accepts, each 1-16 characters of A-Z, 0-9 or '_', e.g. [\"CT\"]", $"{at}.modalities");
        }
        OneOf(s.Resize, ImageResizeMethod.All, $"{at}.resize");
        OneOf(s.Layout, ImageLayout.All, $"{at}.layout");
        OneOf(s.Color, ImageColorMode.All, $"{at}.color");
        OneOf(s.Monochrome1, Monochrome1Mode.All, $"{at}.monochrome1");
        OneOf(s.Batch, ImageBatchMode.All, $"{at}.batch");
        if (spec.Datatype != TensorDatatype.FP32)
        {
            throw MedServeException.Invalid($"{at} needs an FP32 input, but the input is {spec.Datatype}", at);
        }
        if (spec.Shape.Length != 4)
        {
            throw MedServeException.Invalid($"{at} needs a rank-4 input ({s.Layout}: batch, {(s.Layout == ImageLayout.Nhwc ? "height, width, channels" : "channels, height, width")}), but the input's shape is {spec.ShapeText}", at);
        }
        var (h, w, c) = Dimensions(s.Layout);
        var channels = spec.Shape[c];
        if (channels is not (1 or 3))
        {
            throw MedServeException.Invalid($"{at}.layout is {s.Layout}, so dimension {c} of the input's shape {spec.ShapeText} holds the channels; it must be fixed to 1 (grey) or 3 (RGB)", $"{at}.layout");
        }
        if (channels == 3 && s.Color != ImageColorMode.Rgb)
        {
            throw MedServeException.Invalid($"{at}.color must be rgb: the input's shape {spec.ShapeText} has 3 channels", $"{at}.color");
        }
        if (channels == 1 && s.Color == ImageColorMode.Rgb)
        {
            throw MedServeException.Invalid($"{at}.color is rgb but the input's shape {spec.ShapeText} has 1 channel; use reject or luminance", $"{at}.color");
        }
        CheckSize(spec, s.Height, spec.Shape[h], "height", h, s.Resize, at);
        CheckSize(spec, s.Width, spec.Shape[w], "width", w, s.Resize, at);
        if (s.Window is { } window && (!double.IsFinite(window.Center) || !double.IsFinite(window.Width) || window.Width <= 0))
        {
            throw MedServeException.Invalid($"{at}.window needs a finite center and a width above 0", $"{at}.window");
        }
        if (s.Normalize is { } n && (!double.IsFinite(n.Scale) || !double.IsFinite(n.Offset) || n.Scale == 0))
        {
            throw MedServeException.Invalid($"{at}.normalize needs a finite, non-zero scale and a finite offset", $"{at}.normalize");
        }
    }

    private static void CheckSize(TensorSpec spec, int? declared, long dimension, string name, int index, string resize, string at)
    {
        var field = $"{at}.{name}";
        if (declared is { } d && d is < 1 or > 65535)
        {
            throw MedServeException.Invalid($"{field} must be 1-65535", field);
        }
        if (dimension > 0)
        {
            if (declared is { } d2 && d2 != dimension)
            {
                throw MedServeException.Invalid($"{field} is {d2.ToString(CultureInfo.InvariantCulture)} but the input's shape {spec.ShapeText} fixes dimension {index} to {dimension.ToString(CultureInfo.InvariantCulture)}", field);
            }
            return;
        }
        if (resize == ImageResizeMethod.None)
        {
            if (declared is not null)
            {
                throw MedServeException.Invalid($"{field} is set but resize is none: with a dynamic {name} (dimension {index} of {spec.ShapeText}) each image keeps its own size", field);
            }
            return;
        }
        if (declared is null)
        {
            throw MedServeException.Invalid($"{field} is required: the input's {name} (dimension {index} of {spec.ShapeText}) is dynamic and resize is {resize}", field);
        }
    }

    private static void OneOf(string? value, string[] allowed, string field)
    {
        if (value is null || !allowed.Contains(value, StringComparer.Ordinal))
        {
            throw MedServeException.Invalid($"{field} must be one of {string.Join(", ", allowed)}", field);
        }
    }

    /// <summary>A DICOM code string as (0008,0060) holds it: 1-16 characters of A-Z, 0-9, '_' (and inner spaces).</summary>
    public static bool IsModalityTerm(string? value) =>
        value is { Length: > 0 and <= 16 } && value.Trim().Length == value.Length && value.All(ch => ch is (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_' or ' ');
}
