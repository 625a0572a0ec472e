using System.Globalization;

namespace MedServe;

/// <summary>
/// The field rules of named tabular records, one home for every front end that takes them (records JSON and CSV, CSV
/// jobs, FHIR): a model with one input of shape [-1, n] whose features are named (<see cref="TensorSpec.Labels"/>, with
/// their <see cref="TensorSpec.Features"/> schema when declared). Each value is checked against its feature: a number,
/// finite unless the input allows otherwise, in a unit that converts to the feature's, in range, one of the coded
/// values; a missing optional feature takes its default. Messages name the feature (the model's name for it), never
/// the caller's value, unit text or header.
/// </summary>
public sealed class FeatureValues
{
    private readonly Dictionary<string, int> _byKey = new(StringComparer.OrdinalIgnoreCase);

    public FeatureValues(ModelManifest manifest)
    {
        if (manifest.Inputs is not [{ Shape: [-1, > 0] } input] || input.Datatype is not (TensorDatatype.FP32 or TensorDatatype.FP64))
        {
            throw MedServeException.Invalid($"{manifest.Name} does not take tabular records (one FP32 or FP64 input of shape [-1, n])", "model");
        }
        Model = manifest.Name;
        Input = input;
        Width = (int)input.Shape[1];
        if (input.Features is { } features && features.Length == Width)
        {
            Features = features;
        }
        else if (input.Labels is { } labels && labels.Length == Width)
        {
            Features = [.. labels.Select(l => new FeatureSchema { Name = l })];
        }
        else
        {
            throw MedServeException.Invalid($"{manifest.Name} does not name its features (the manifest's input has no labels): send V2 tensors or a CSV job with columns in the model's order", "model");
        }
        for (var k = 0; k < Features.Length; k++)
        {
            _byKey.TryAdd(Key(Features[k].Name), k);
        }
    }

    public string Model { get; }

    public TensorSpec Input { get; }

    /// <summary>Values per record.</summary>
    public int Width { get; }

    /// <summary>The features in the input's order (names only when the manifest declares no schema).</summary>
    public FeatureSchema[] Features { get; }

    /// <summary>
    /// The feature a field or column name means: trimmed, case-insensitive, <c>_</c> as a space (<c>mean_radius</c> is
    /// <c>mean radius</c>); -1 when none.
    /// </summary>
    public int IndexOf(string name) => _byKey.TryGetValue(Key(name), out var k) ? k : -1;

    private static string Key(string name) => name.Trim().Replace('_', ' ');

    /// <summary>
    /// Splits a CSV header <c>name [unit]</c> (e.g. <c>s6 [mmol/L]</c>, <c>bp [mm[Hg]]</c>) into the name and the UCUM
    /// unit between the first <c>" ["</c> and the last <c>]</c>; a header without one has no unit.
    /// </summary>
    public static (string Name, string? Unit) SplitHeader(string header)
    {
        var text = header.Trim();
        var open = text.IndexOf(" [", StringComparison.Ordinal);
        return open > 0 && text.EndsWith(']') ? (text[..open], text[(open + 2)..^1].Trim()) : (text, null);
    }

    /// <summary>The unit a value given with a unit is a measurement in: the code's (before its transform), else the feature's.</summary>
    private static string? MeasuredUnit(FeatureSchema f) => f.Code?.Unit ?? f.Unit;

    /// <summary>
    /// The feature's value from a number the caller gave: as it is without <paramref name="unit"/>; with one, converted
    /// from that unit to the measured unit and transformed (<see cref="FeatureCode.Transform"/>). Null with the reason
    /// (naming the feature, never the value) when the value cannot be taken.
    /// </summary>
    public double? TryValue(int k, double given, string? unit, out string? error)
    {
        var f = Features[k];
        error = null;
        var value = given;
        if (!double.IsFinite(given))
        {
            if (Input.AllowNonFinite && unit is null)
            {
                return given;
            }
            error = $"'{f.Name}' is not a finite number";
            return null;
        }
        if (unit is not null)
        {
            var measured = MeasuredUnit(f);
            if (measured is null)
            {
                error = $"'{f.Name}' takes a plain number, without a unit";
                return null;
            }
            if (Ucum.Convert(given, unit, measured, f.MolarMass) is not { } converted)
            {
                error = $"'{f.Name}': the unit given does not convert to {measured} (units that do: {string.Join(", ", UnitsFor(f))})";
                return null;
            }
            value = converted;
            if (f.Code?.Transform is "ln")
            {
                if (value <= 0)
                {
                    error = $"'{f.Name}' must be above 0 {measured} (the model takes its logarithm)";
                    return null;
                }
                value = Math.Log(value);
            }
        }
        if ((f.Min is { } min && value < min) || (f.Max is { } max && value > max))
        {
            error = $"'{f.Name}' is out of range: {Model} takes {RangeText(f)}";
            return null;
        }
        if (f.Values is { Length: > 0 } allowed && !allowed.Contains(value))
        {
            error = $"'{f.Name}' must be one of {string.Join(", ", allowed.Select(Number))}";
            return null;
        }
        return value;
    }

    /// <summary>The value of a feature the record does not give: its default when optional, else the reason.</summary>
    public double? Missing(int k, out string? error)
    {
        var f = Features[k];
        error = null;
        if (!f.Required && f.Default is { } stand)
        {
            return stand;
        }
        if (!f.Required && Input.AllowNonFinite)
        {
            return double.NaN;
        }
        error = $"'{f.Name}' is missing";
        return null;
    }

    /// <summary>The accepted range in words, in the feature's unit (or the transformed scale), e.g. <c>52.6 to 129 mg/dL</c>.</summary>
    public static string RangeText(FeatureSchema f)
    {
        var unit = f.Unit is null ? "" : " " + f.Unit;
        return (f.Min, f.Max) switch
        {
            ({ } lo, { } hi) => $"{Number(lo)} to {Number(hi)}{unit}",
            ({ } lo, null) => $"at least {Number(lo)}{unit}",
            (null, { } hi) => $"at most {Number(hi)}{unit}",
            _ => "any value",
        };
    }

    /// <summary>Units a value of this feature may be given in (the measured unit first).</summary>
    public static IEnumerable<string> UnitsFor(FeatureSchema f)
    {
        var measured = MeasuredUnit(f);
        if (measured is null)
        {
            return [];
        }
        return new[] { measured }.Concat(UcumCandidates.Where(u => u != measured && Ucum.Convert(1, u, measured, f.MolarMass) is not null));
    }

    private static readonly string[] UcumCandidates = ["mg/dL", "mmol/L", "g/L", "g/dL", "mg/L", "ug/mL", "mol/L", "umol/L", "mm[Hg]", "kPa", "a", "mo", "wk", "d", "1", "{ratio}", "%", "kg/m2"];

    private static string Number(double v) => v.ToString("G6", CultureInfo.InvariantCulture);

    /// <summary>One record's values in the model's order, or the reasons it cannot run (each naming a feature).</summary>
    public sealed record Row(double[]? Values, IReadOnlyList<FieldError> Errors)
    {
        public bool Ok => Values is not null;
    }

    /// <summary>Reads one record from its fields: (feature index, number or null for missing, unit, whether the text was not a number).</summary>
    public Row Read(ReadOnlySpan<(int Feature, double? Number, string? Unit, bool NotANumber)> fields)
    {
        // Once per CSV row of a job (200,000 of them): nothing allocated beyond the values unless a field is refused.
        var values = new double[Width];
        Span<bool> seen = Width <= 512 ? stackalloc bool[Width] : new bool[Width];
        List<FieldError>? errors = null;
        foreach (var (k, number, unit, notANumber) in fields)
        {
            seen[k] = true;
            var f = Features[k];
            if (notANumber)
            {
                (errors ??= []).Add(new FieldError(f.Name, $"'{f.Name}' is not a number"));
                continue;
            }
            var value = number is { } n ? TryValue(k, n, unit, out var error) : Missing(k, out error);
            if (value is { } v)
            {
                values[k] = v;
            }
            else
            {
                (errors ??= []).Add(new FieldError(f.Name, error!));
            }
        }
        for (var k = 0; k < Width; k++)
        {
            if (!seen[k])
            {
                if (Missing(k, out var error) is { } v)
                {
                    values[k] = v;
                }
                else
                {
                    (errors ??= []).Add(new FieldError(Features[k].Name, error!));
                }
            }
        }
        return errors is null ? new Row(values, []) : new Row(null, errors);
    }

    /// <summary>Stacks rows into the model's input tensor [rows, width].</summary>
    public Tensor Tensor(IReadOnlyList<double[]> rows)
    {
        var data = new double[rows.Count * Width];
        for (var r = 0; r < rows.Count; r++)
        {
            rows[r].CopyTo(data, r * Width);
        }
        return TensorTypes.FromDoubles(Input.Name, Input.Datatype, [rows.Count, Width], data);
    }
}

/// <summary>Why a record's field cannot be taken: the feature (the model's name) and a message that names it, never its value.</summary>
[GenerateSerializer, Immutable, Alias("medserve.field-error")]
public sealed record FieldError([property: Id(0)] string Field, [property: Id(1)] string Message);
