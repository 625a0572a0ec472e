namespace MedServe;

/// <summary>
/// What a model package declares about itself: its interface, its card (intended use,
/// limitations, metrics, provenance) and the samples that must reproduce at deployment.
/// Stored as <c>manifest.json</c> (snake_case) beside <c>model.onnx</c>.
/// </summary>
[GenerateSerializer, Immutable, Alias("medserve.manifest")]
public sealed record ModelManifest
{
    [Id(0)] public string Name { get; init; } = "";
    [Id(1)] public string Version { get; init; } = "";
    [Id(2)] public string? Description { get; init; }
    [Id(3)] public TensorSpec[] Inputs { get; init; } = [];
    [Id(4)] public TensorSpec[] Outputs { get; init; } = [];
    [Id(5)] public string? IntendedUse { get; init; }
    [Id(6)] public string[] Limitations { get; init; } = [];
    [Id(7)] public Dictionary<string, double> ValidationMetrics { get; init; } = [];
    [Id(8)] public Provenance? Provenance { get; init; }
    [Id(9)] public ValidationSpec? Validation { get; init; }
    /// <summary>The accelerator the model wants: <c>cpu</c>, <c>gpu</c> or <c>any</c>.</summary>
    [Id(10)] public string Accelerator { get; init; } = "any";
    /// <summary>Which series of a study stored over DICOMweb start a job on this model (none: never).</summary>
    [Id(11)] public DicomRoutingRule? DicomRouting { get; init; }
}

/// <summary>One input or output: name, datatype, shape (-1 for a dynamic dimension), optional labels.</summary>
[GenerateSerializer, Immutable, Alias("medserve.tensor-spec")]
public sealed record TensorSpec
{
    [Id(0)] public string Name { get; init; } = "";
    [Id(1)] public TensorDatatype Datatype { get; init; } = TensorDatatype.FP32;
    [Id(2)] public long[] Shape { get; init; } = [];
    /// <summary>Names of the last dimension's entries (feature names for an input, class names for an output).</summary>
    [Id(3)] public string[]? Labels { get; init; }
    [Id(4)] public string? Description { get; init; }
    /// <summary>Whether NaN or infinity may be sent in this input; false unless the model handles missing values.</summary>
    [Id(5)] public bool AllowNonFinite { get; init; }
    [Id(6)] public string? Unit { get; init; }
    /// <summary>
    /// For a tabular input ([-1, n]): its n features in order (names equal to <see cref="Labels"/>), with unit, range,
    /// required or default, and clinical code; records and FHIR inputs are checked against it.
    /// </summary>
    [Id(8)] public FeatureSchema[]? Features { get; init; }
    /// <summary>For an image input: how a DICOM file or series becomes this tensor (see <see cref="ImageSchema"/>); null when the input takes no DICOM.</summary>
    [Id(7)] public ImageSchema? Image { get; init; }

    public string ShapeText => "[" + string.Join(",", Shape) + "]";
}

/// <summary>Where a model and its data came from.</summary>
[GenerateSerializer, Immutable, Alias("medserve.provenance")]
public sealed record Provenance
{
    [Id(0)] public string? TrainingData { get; init; }
    [Id(1)] public string? DataLicense { get; init; }
    [Id(2)] public string? TrainedBy { get; init; }
    [Id(3)] public string? Framework { get; init; }
    [Id(4)] public string? Citation { get; init; }
    [Id(5)] public string? SourceSha256 { get; init; }
}

/// <summary>Samples a version must reproduce before it takes traffic.</summary>
[GenerateSerializer, Immutable, Alias("medserve.validation-spec")]
public sealed record ValidationSpec
{
    /// <summary>Largest absolute difference allowed between an output and its expected value.</summary>
    [Id(0)] public double Tolerance { get; init; } = 1e-4;
    [Id(1)] public ValidationSample[] Samples { get; init; } = [];
}

/// <summary>One validation sample: inputs by name, and the outputs expected of them.</summary>
[GenerateSerializer, Immutable, Alias("medserve.validation-sample")]
public sealed record ValidationSample
{
    [Id(0)] public string? Description { get; init; }
    [Id(1)] public Dictionary<string, SampleTensor> Inputs { get; init; } = [];
    [Id(2)] public Dictionary<string, ExpectedTensor> ExpectedOutputs { get; init; } = [];
}

/// <summary>Tensor values written out in a manifest (numbers; booleans as 0/1).</summary>
[GenerateSerializer, Immutable, Alias("medserve.sample-tensor")]
public sealed record SampleTensor
{
    [Id(0)] public long[] Shape { get; init; } = [];
    [Id(1)] public double[] Data { get; init; } = [];
}

/// <summary>
/// An expected output. Compared element-wise within the tolerance, or, for a segmentation mask,
/// by Dice overlap of (output &gt;= threshold) with the reference mask.
/// </summary>
[GenerateSerializer, Immutable, Alias("medserve.expected-tensor")]
public sealed record ExpectedTensor
{
    [Id(0)] public long[] Shape { get; init; } = [];
    [Id(1)] public double[] Data { get; init; } = [];
    [Id(2)] public double? Tolerance { get; init; }
    [Id(3)] public double? MinDice { get; init; }
    [Id(4)] public double Threshold { get; init; } = 0.5;
}
