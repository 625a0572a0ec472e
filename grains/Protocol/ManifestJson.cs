using System.Text.Json;
using System.Text.Json.Serialization;

namespace MedServe.Protocol;

/// <summary>Reads and writes <c>manifest.json</c> (snake_case, datatypes by their V2 names) and checks it is complete.</summary>
public static class ManifestJson
{
    /// <summary>The JSON conventions of every MedServe document: snake_case names, enums as strings.</summary>
    public static readonly JsonSerializerOptions Options = CreateOptions();

    private static JsonSerializerOptions CreateOptions()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web)
        {
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            DictionaryKeyPolicy = null,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
            WriteIndented = true,
            AllowTrailingCommas = true,
            ReadCommentHandling = JsonCommentHandling.Skip,
            UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        };
        options.Converters.Add(new JsonStringEnumConverter());
        return options;
    }

    /// <summary>Parses a manifest and checks its required fields; errors name the field.</summary>
    public static ModelManifest Parse(ReadOnlySpan<byte> json)
    {
        ModelManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<ModelManifest>(json, Options);
        }
        catch (JsonException e)
        {
            var path = string.IsNullOrEmpty(e.Path) ? "manifest" : "manifest" + e.Path.TrimStart('$');
            throw MedServeException.Invalid($"manifest.json is not valid: {Describe(e)} at {path}", path);
        }
        if (manifest is null)
        {
            throw MedServeException.Invalid("manifest.json is empty", "manifest");
        }
        Check(manifest);
        return manifest;
    }

    private static string Describe(JsonException e) =>
        e.Message.Contains("could not be mapped", StringComparison.Ordinal) ? "unknown field"
        : e.Message.Contains("could not be converted", StringComparison.Ordinal) ? "wrong type or value"
        : "malformed JSON";

    /// <summary>Checks a manifest is complete and self-consistent.</summary>
    public static void Check(ModelManifest m)
    {
        // JSON may say null where a list or object belongs; name it instead of failing later.
        if (m.Inputs is null || m.Outputs is null || m.Limitations is null || m.ValidationMetrics is null)
        {
            throw MedServeException.Invalid("manifest.inputs, outputs, limitations and validation_metrics may not be null", "manifest");
        }
        if (!ModelNames.IsValidName(m.Name))
        {
            throw MedServeException.Invalid("manifest.name must be 1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit", "manifest.name");
        }
        if (!ModelNames.IsValidVersion(m.Version))
        {
            throw MedServeException.Invalid("manifest.version must be 1-32 characters of A-Z, a-z, 0-9, '.', '_' or '-'", "manifest.version");
        }
        if (m.Accelerator is not ("cpu" or "gpu" or "any"))
        {
            throw MedServeException.Invalid("manifest.accelerator must be cpu, gpu or any", "manifest.accelerator");
        }
        CheckSpecs(m.Inputs, "inputs");
        CheckSpecs(m.Outputs, "outputs");
        ImageSchemaCheck.Check(m);
        if (m.DicomRouting is { } routing)
        {
            if (m.Inputs is not [{ Image: not null }])
            {
                throw MedServeException.Invalid("manifest.dicom_routing needs exactly one input, with an image schema: a stored study becomes that input", "manifest.dicom_routing");
            }
            if (routing.Modalities is null || routing.BodyParts is null)
            {
                throw MedServeException.Invalid("manifest.dicom_routing.modalities and body_parts may not be null", "manifest.dicom_routing");
            }
            if (routing.SeriesDescription is { } pattern)
            {
                try
                {
                    _ = new System.Text.RegularExpressions.Regex(pattern, System.Text.RegularExpressions.RegexOptions.None, TimeSpan.FromMilliseconds(100));
                }
                catch (ArgumentException)
                {
                    throw MedServeException.Invalid("manifest.dicom_routing.series_description is not a valid regular expression", "manifest.dicom_routing.series_description");
                }
            }
        }
        if (m.Validation is { } v)
        {
            if (v.Samples is null || v.Samples.Any(x => x is null || x.Inputs is null || x.ExpectedOutputs is null
                || x.Inputs.Values.Any(t => t?.Shape is null || t.Data is null) || x.ExpectedOutputs.Values.Any(t => t?.Shape is null || t.Data is null)))
            {
                throw MedServeException.Invalid("manifest.validation.samples has a null sample, tensor, shape or data", "manifest.validation.samples");
            }
            if (v.Tolerance is < 0 or double.NaN)
            {
                throw MedServeException.Invalid("manifest.validation.tolerance must be >= 0", "manifest.validation.tolerance");
            }
            for (var s = 0; s < v.Samples.Length; s++)
            {
                var sample = v.Samples[s];
                var at = $"manifest.validation.samples[{s}]";
                foreach (var spec in m.Inputs)
                {
                    if (!sample.Inputs.ContainsKey(spec.Name))
                    {
                        throw MedServeException.Invalid($"{at}.inputs lacks input '{spec.Name}'", $"{at}.inputs");
                    }
                }
                foreach (var (name, t) in sample.Inputs)
                {
                    if (m.Inputs.All(i => i.Name != name))
                    {
                        throw MedServeException.Invalid($"{at}.inputs names '{name}', which is not an input", $"{at}.inputs.{name}");
                    }
                    CheckSampleShape(t.Shape, t.Data.Length, $"{at}.inputs.{name}");
                }
                if (sample.ExpectedOutputs.Count == 0)
                {
                    throw MedServeException.Invalid($"{at}.expected_outputs is empty", $"{at}.expected_outputs");
                }
                foreach (var (name, t) in sample.ExpectedOutputs)
                {
                    if (m.Outputs.All(o => o.Name != name))
                    {
                        throw MedServeException.Invalid($"{at}.expected_outputs names '{name}', which is not an output", $"{at}.expected_outputs.{name}");
                    }
                    CheckSampleShape(t.Shape, t.Data.Length, $"{at}.expected_outputs.{name}");
                }
            }
        }
    }

    private static void CheckSpecs(TensorSpec[] specs, string field)
    {
        if (specs.Length == 0)
        {
            throw MedServeException.Invalid($"manifest.{field} must name at least one tensor", $"manifest.{field}");
        }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < specs.Length; i++)
        {
            var s = specs[i];
            var at = $"manifest.{field}[{i}]";
            if (s is null || s.Shape is null)
            {
                throw MedServeException.Invalid($"{at} must be an object with name, datatype and shape", at);
            }
            if (string.IsNullOrWhiteSpace(s.Name))
            {
                throw MedServeException.Invalid($"{at}.name is required", $"{at}.name");
            }
            if (!seen.Add(s.Name))
            {
                throw MedServeException.Invalid($"{at}.name '{s.Name}' appears twice", $"{at}.name");
            }
            if (s.Shape.Length == 0 || s.Shape.Any(d => d == 0 || d < -1))
            {
                throw MedServeException.Invalid($"{at}.shape must list dimensions, each positive or -1 for dynamic", $"{at}.shape");
            }
            if (s.Labels is { } labels && s.Shape[^1] > 0 && labels.Length != s.Shape[^1])
            {
                throw MedServeException.Invalid($"{at}.labels has {labels.Length} entries but the last dimension is {s.Shape[^1]}", $"{at}.labels");
            }
            if (s.Features is not null)
            {
                if (field != "inputs")
                {
                    throw MedServeException.Invalid($"{at}.features: only inputs declare features", $"{at}.features");
                }
                CheckFeatures(s, at);
            }
        }
    }

    /// <summary>
    /// A tabular input's feature schema: one entry per column of its [-1, n] shape, named as its labels in order, with
    /// sound ranges, defaults and codes. Errors name the field (<c>manifest.inputs[0].features[3].min</c>).
    /// </summary>
    private static void CheckFeatures(TensorSpec s, string at)
    {
        var features = s.Features!;
        if (s.Shape is not [-1, > 0] && s.Shape is not [> 0, > 0])
        {
            throw MedServeException.Invalid($"{at}.features: only a tabular input (shape [-1, n]) declares features", $"{at}.features");
        }
        if (features.Length != s.Shape[^1])
        {
            throw MedServeException.Invalid($"{at}.features has {features.Length} entries but the input has {s.Shape[^1]} features", $"{at}.features");
        }
        if (s.Labels is not { } labels)
        {
            throw MedServeException.Invalid($"{at}.labels must name the features (in order) when features are declared", $"{at}.labels");
        }
        for (var k = 0; k < features.Length; k++)
        {
            var f = features[k];
            var fat = $"{at}.features[{k}]";
            if (f is null)
            {
                throw MedServeException.Invalid($"{fat} must be an object", fat);
            }
            if (f.Name != labels[k])
            {
                throw MedServeException.Invalid($"{fat}.name must equal {at}.labels[{k}] ('{labels[k]}'): features are in the labels' order", $"{fat}.name");
            }
            if (f.Unit is { } unit && string.IsNullOrWhiteSpace(unit))
            {
                throw MedServeException.Invalid($"{fat}.unit must be a UCUM code or left out", $"{fat}.unit");
            }
            if (f.Min is { } lo && !double.IsFinite(lo))
            {
                throw MedServeException.Invalid($"{fat}.min must be a finite number", $"{fat}.min");
            }
            if (f.Max is { } hi && !double.IsFinite(hi))
            {
                throw MedServeException.Invalid($"{fat}.max must be a finite number", $"{fat}.max");
            }
            if (f.Min > f.Max)
            {
                throw MedServeException.Invalid($"{fat}.min is above its max", $"{fat}.min");
            }
            if (f.Values is { } values && (values.Length == 0 || values.Any(v => !double.IsFinite(v) || v < f.Min || v > f.Max)))
            {
                throw MedServeException.Invalid($"{fat}.values must list finite numbers within min and max", $"{fat}.values");
            }
            if (f.Required && f.Default is not null)
            {
                throw MedServeException.Invalid($"{fat}.default is for an optional feature (required: false)", $"{fat}.default");
            }
            if (!f.Required)
            {
                if (f.Default is null && !s.AllowNonFinite)
                {
                    throw MedServeException.Invalid($"{fat}.default is needed: the feature is optional and the input does not allow NaN to stand in (allow_non_finite)", $"{fat}.default");
                }
                if (f.Default is { } d && (double.IsNaN(d) ? !s.AllowNonFinite : !double.IsFinite(d) || d < f.Min || d > f.Max))
                {
                    throw MedServeException.Invalid($"{fat}.default must be within min and max (NaN only where the input allows non-finite values)", $"{fat}.default");
                }
            }
            if (f.MolarMass is { } mm && !(mm > 0 && double.IsFinite(mm)))
            {
                throw MedServeException.Invalid($"{fat}.molar_mass must be a positive number (g/mol)", $"{fat}.molar_mass");
            }
            if (f.Code is { } code)
            {
                if (string.IsNullOrWhiteSpace(code.System) || string.IsNullOrWhiteSpace(code.Code))
                {
                    throw MedServeException.Invalid($"{fat}.code needs a system and a code", $"{fat}.code");
                }
                if (code.Transform is not (null or "ln"))
                {
                    throw MedServeException.Invalid($"{fat}.code.transform must be ln or left out", $"{fat}.code.transform");
                }
                if (code.Transform is not null && code.Unit is null)
                {
                    throw MedServeException.Invalid($"{fat}.code.unit must name the unit the coded quantity is taken in before its transform", $"{fat}.code.unit");
                }
            }
        }
    }

    private static void CheckSampleShape(long[] shape, int length, string at)
    {
        long n = 1;
        foreach (var d in shape)
        {
            if (d < 1)
            {
                throw MedServeException.Invalid($"{at}.shape must have positive dimensions", $"{at}.shape");
            }
            n *= d;
        }
        if (shape.Length == 0 || n != length)
        {
            throw MedServeException.Invalid($"{at}.data has {length} values but shape [{string.Join(",", shape)}] needs {n}", $"{at}.data");
        }
    }

    public static byte[] Serialize(ModelManifest manifest) => JsonSerializer.SerializeToUtf8Bytes(manifest, Options);
}
