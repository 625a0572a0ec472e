namespace MedServe;

/// <summary>
/// A silo as operators see it: status, what it offers, which replicas it hosts. <see cref="ExecutionProviderFallback"/>
/// says why the CPU execution provider runs where CUDA was asked for or probed (<c>CUDA provider failed to load: ...</c>).
/// </summary>
[GenerateSerializer, Immutable, Alias("medserve.silo-info")]
public sealed record SiloInfo(
    [property: Id(0)] string Address,
    [property: Id(1)] string Name,
    [property: Id(2)] string Status,
    [property: Id(3)] string? Accelerator,
    [property: Id(4)] string? ExecutionProvider,
    [property: Id(5)] string? AcceleratorSource,
    [property: Id(6)] Dictionary<string, string> Labels,
    [property: Id(7)] string[] Replicas,
    [property: Id(8)] string? ExecutionProviderFallback = null);
