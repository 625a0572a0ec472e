using Orleans.Placement;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Runtime.Placement;

namespace MedServe.Grains.Placement;

/// <summary>
/// Places a replica only on silos whose <c>medserve.accelerator</c> metadata matches what its key asks for:
/// <c>gpu</c> and <c>cpu</c> strictly, <c>any</c> on gpu silos when there are some, else on any silo.
/// (Orleans' built-in metadata filters compare with the calling silo, which is not what placement by
/// capability needs.) With no match the filter returns nothing and Orleans refuses the placement:
/// the deployment shows Pending.
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class AcceleratorPlacementFilterAttribute() : PlacementFilterAttribute(new AcceleratorPlacementFilterStrategy());

/// <summary>The strategy the attribute stands for; the accelerator comes from each grain's key.</summary>
public sealed class AcceleratorPlacementFilterStrategy : PlacementFilterStrategy
{
    public AcceleratorPlacementFilterStrategy() : base(order: 0)
    {
    }
}

/// <summary>Keeps the silos whose accelerator matches the replica key's.</summary>
internal sealed class AcceleratorPlacementFilterDirector(ISiloMetadataCache metadata) : IPlacementFilterDirector
{
    public IEnumerable<SiloAddress> Filter(PlacementFilterStrategy filterStrategy, PlacementTarget target, IEnumerable<SiloAddress> silos)
    {
        var wanted = GrainKeys.ReplicaAccelerator(target.GrainIdentity.Key.ToString()!);
        var candidates = silos as IReadOnlyCollection<SiloAddress> ?? [.. silos];
        var gpu = candidates.Where(s => AcceleratorOf(s) == Capabilities.Gpu).ToArray();
        return wanted switch
        {
            Capabilities.Gpu => gpu,
            Capabilities.Cpu => candidates.Where(s => AcceleratorOf(s) == Capabilities.Cpu).ToArray(),
            _ => gpu.Length > 0 ? gpu : candidates.Where(s => AcceleratorOf(s) is not null).ToArray(),
        };
    }

    private string? AcceleratorOf(SiloAddress silo) =>
        metadata.GetSiloMetadata(silo).Metadata.TryGetValue(Capabilities.AcceleratorKey, out var value) ? value : null;
}

/// <summary>
/// Spreads a deployment's replicas over the compatible silos. The deployment loads its replicas one by one and
/// names, in the request context, the silos already hosting its other replicas; a new replica goes to a
/// compatible silo not among them (the i-th in a stable order), so N replicas on N or more silos never share one.
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class ReplicaSpreadPlacementAttribute() : PlacementAttribute(ReplicaSpreadPlacement.Instance);

[GenerateSerializer, Immutable, Alias("medserve.replica-spread")]
public sealed class ReplicaSpreadPlacement : PlacementStrategy
{
    public static readonly ReplicaSpreadPlacement Instance = new();
}

public sealed class ReplicaSpreadPlacementDirector : IPlacementDirector
{
    /// <summary>Request-context key: comma-separated silos that already host replicas of the same deployment.</summary>
    public const string AvoidKey = "medserve.avoid-silos";

    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var silos = context.GetCompatibleSilos(target).OrderBy(s => s.ToParsableString(), StringComparer.Ordinal).ToArray();
        var avoid = target.RequestContextData is { } data && data.TryGetValue(AvoidKey, out var value) && value is string text
            ? text.Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal)
            : [];
        var free = silos.Where(s => !avoid.Contains(s.ToParsableString())).ToArray();
        var pool = free.Length > 0 ? free : silos;
        var index = GrainKeys.ReplicaIndex(target.GrainIdentity.Key.ToString()!);
        return Task.FromResult(pool[index % pool.Length]);
    }
}
