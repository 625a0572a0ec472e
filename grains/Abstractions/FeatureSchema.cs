namespace MedServe;

/// <summary>
/// One named feature of a tabular input (<see cref="TensorSpec.Features"/>, in the order of the input's last dimension and
/// of its <see cref="TensorSpec.Labels"/>): what the value means, its unit, the range the model was trained on, whether it
/// may be missing, and the code that maps it from clinical data (LOINC for FHIR Observations). Records (JSON, CSV,
/// jobs) and FHIR are checked against it field by field; V2 tensors are not (they are the model's raw interface).
/// </summary>
[GenerateSerializer, Immutable, Alias("medserve.feature-schema")]
public sealed record FeatureSchema
{
    /// <summary>The feature's name: the input's label at the same position.</summary>
    [Id(0)] public string Name { get; init; } = "";

    /// <summary>
    /// The UCUM unit of the value the model takes (<c>mg/dL</c>, <c>mm[Hg]</c>, <c>a</c>); null for a value without a
    /// unit (a code, a count, a logarithm). A value given in another unit of the same kind is converted (<see cref="Ucum"/>).
    /// </summary>
    [Id(1)] public string? Unit { get; init; }

    /// <summary>The smallest value accepted (in <see cref="Unit"/>, after conversion); null for no lower bound.</summary>
    [Id(2)] public double? Min { get; init; }

    /// <summary>The largest value accepted; null for no upper bound.</summary>
    [Id(3)] public double? Max { get; init; }

    /// <summary>The only values accepted, for a coded feature (e.g. <c>[1, 2]</c>); null for any value in range.</summary>
    [Id(4)] public double[]? Values { get; init; }

    /// <summary>Whether a record must give the feature. An optional feature left out takes <see cref="Default"/>.</summary>
    [Id(5)] public bool Required { get; init; } = true;

    /// <summary>
    /// What stands in for an optional feature that is missing: a number, or NaN (written <c>"NaN"</c>) where the input
    /// allows non-finite values (<see cref="TensorSpec.AllowNonFinite"/>) and the model treats NaN as missing.
    /// </summary>
    [Id(6), System.Text.Json.Serialization.JsonNumberHandling(System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals)]
    public double? Default { get; init; }

    /// <summary>The clinical code this feature is measured as (LOINC for an Observation), and how its value maps to the feature.</summary>
    [Id(7)] public FeatureCode? Code { get; init; }

    /// <summary>
    /// Molar mass of the analyte in g/mol, so a substance concentration (<c>mmol/L</c>) converts to a mass concentration
    /// (<c>mg/dL</c>): mg/dL = mmol/L x molar mass / 10 (glucose 180.16 gives the laboratory factor 18.016).
    /// </summary>
    [Id(8)] public double? MolarMass { get; init; }

    [Id(9)] public string? Description { get; init; }
}

/// <summary>
/// A code (system + code) that identifies a feature in clinical data, e.g. <c>http://loinc.org</c> <c>2345-7</c>.
/// The coded quantity is taken in <see cref="Unit"/> (the feature's unit when null) and becomes the feature through
/// <see cref="Transform"/>.
/// </summary>
[GenerateSerializer, Immutable, Alias("medserve.feature-code")]
public sealed record FeatureCode
{
    [Id(0)] public string System { get; init; } = "";
    [Id(1)] public string Code { get; init; } = "";
    [Id(2)] public string? Display { get; init; }

    /// <summary>The UCUM unit of the coded quantity, when it differs from the feature's (a transformed feature has none).</summary>
    [Id(3)] public string? Unit { get; init; }

    /// <summary>null (the value as it is) or <c>ln</c> (the natural logarithm of the coded quantity in <see cref="Unit"/>).</summary>
    [Id(4)] public string? Transform { get; init; }
}

/// <summary>Code systems MedServe names.</summary>
public static class CodeSystems
{
    public const string Loinc = "http://loinc.org";
    public const string Ucum = "http://unitsofmeasure.org";

    /// <summary>
    /// MedServe's own system for features that have no standard code (the breast cancer features, diabetes' sex): the
    /// code is the feature's name, as in the manifest.
    /// </summary>
    public const string Feature = "urn:medserve:feature";
}

/// <summary>
/// The UCUM units MedServe converts between (case-sensitive UCUM codes): a value converts between units of one kind by
/// their factors, and between a substance and a mass concentration through the feature's molar mass. Anything else is
/// refused by name: MedServe never guesses a unit.
/// </summary>
public static class Ucum
{
    private enum Kind { MassConcentration, SubstanceConcentration, Pressure, Time, Dimensionless, BodyMassIndex }

    // Factor to the kind's base unit: g/L, mol/L, mm[Hg], a (the Julian year, 365.25 d, as UCUM defines it), 1, kg/m2.
    private static readonly Dictionary<string, (Kind Kind, double Factor)> Units = new(StringComparer.Ordinal)
    {
        ["g/L"] = (Kind.MassConcentration, 1),
        ["mg/dL"] = (Kind.MassConcentration, 0.01),
        ["g/dL"] = (Kind.MassConcentration, 10),
        ["mg/L"] = (Kind.MassConcentration, 0.001),
        ["ug/mL"] = (Kind.MassConcentration, 0.001),
        ["mol/L"] = (Kind.SubstanceConcentration, 1),
        ["mmol/L"] = (Kind.SubstanceConcentration, 1e-3),
        ["umol/L"] = (Kind.SubstanceConcentration, 1e-6),
        ["mm[Hg]"] = (Kind.Pressure, 1),
        ["kPa"] = (Kind.Pressure, 1000 / 133.322387415), // 1 mm[Hg] = 133.322387415 Pa
        ["a"] = (Kind.Time, 1),
        ["mo"] = (Kind.Time, 1.0 / 12),
        ["wk"] = (Kind.Time, 7 / 365.25),
        ["d"] = (Kind.Time, 1 / 365.25),
        ["1"] = (Kind.Dimensionless, 1),
        ["{ratio}"] = (Kind.Dimensionless, 1),
        ["%"] = (Kind.Dimensionless, 0.01),
        ["kg/m2"] = (Kind.BodyMassIndex, 1),
    };

    /// <summary>Whether MedServe knows the unit (the UCUM code, case-sensitive).</summary>
    public static bool IsKnown(string unit) => Units.ContainsKey(unit);

    /// <summary>
    /// <paramref name="value"/> in <paramref name="from"/> expressed in <paramref name="to"/>, or null when the two do
    /// not convert (unknown, or of different kinds without a molar mass to bridge mass and substance).
    /// </summary>
    public static double? Convert(double value, string from, string to, double? molarMass = null)
    {
        if (from == to)
        {
            return value;
        }
        if (!Units.TryGetValue(from, out var f) || !Units.TryGetValue(to, out var t))
        {
            return null;
        }
        var inBase = value * f.Factor;
        if (f.Kind == t.Kind)
        {
            return inBase / t.Factor;
        }
        if (molarMass is > 0 && (f.Kind, t.Kind) is (Kind.SubstanceConcentration, Kind.MassConcentration))
        {
            return inBase * molarMass.Value / t.Factor; // mol/L x g/mol = g/L
        }
        if (molarMass is > 0 && (f.Kind, t.Kind) is (Kind.MassConcentration, Kind.SubstanceConcentration))
        {
            return inBase / molarMass.Value / t.Factor;
        }
        return null;
    }
}
