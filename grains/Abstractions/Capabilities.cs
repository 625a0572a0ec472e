namespace MedServe;

/// <summary>What a silo offers, published as Orleans silo metadata so placement can read it.</summary>
public static class Capabilities
{
    /// <summary>Metadata key: <c>gpu</c> or <c>cpu</c>.</summary>
    public const string AcceleratorKey = "medserve.accelerator";

    /// <summary>Metadata key: the ONNX Runtime execution provider that really runs on the silo.</summary>
    public const string ExecutionProviderKey = "medserve.execution_provider";

    /// <summary>Metadata key: how the accelerator was decided (<c>probe: ...</c> or <c>configured</c>).</summary>
    public const string SourceKey = "medserve.accelerator_source";

    /// <summary>Metadata key: why the CPU execution provider runs where CUDA was asked for or probed (absent when not).</summary>
    public const string FallbackReasonKey = "medserve.execution_provider_fallback";

    /// <summary>Prefix of free-form labels (<c>--label zone=a</c> becomes <c>label.zone</c>).</summary>
    public const string LabelPrefix = "label.";

    public const string Gpu = "gpu";
    public const string Cpu = "cpu";
    public const string Any = "any";

    public static bool IsAcceleratorRequest(string? value) => value is Gpu or Cpu or Any;
}
