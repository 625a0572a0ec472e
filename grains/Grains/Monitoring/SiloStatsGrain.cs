using Orleans.Placement;
using Orleans.Runtime.Placement;

namespace MedServe.Grains.Monitoring;

/// <summary>
/// One silo's live figures (<see cref="ISiloStatsGrain"/>), answered from the <see cref="StatsRecorder"/> of the silo
/// its key names: placed there by <see cref="SiloPlacement"/>, and immovable so the rebalancer never moves it away.
/// </summary>
[Immovable]
[SiloPlacement]
internal sealed class SiloStatsGrain(StatsRecorder recorder, ILocalSiloDetails silo) : Grain, ISiloStatsGrain
{
    public Task<SiloStats> GetAsync(int windowSeconds)
    {
        if (windowSeconds is < 1 or > StatsRecorder.RingSeconds)
        {
            throw MedServeException.Invalid($"window must be 1 to {StatsRecorder.RingSeconds} seconds, not {windowSeconds}", "window");
        }
        // The silo's own address, not the key: an answer from anywhere else would show.
        return Task.FromResult(recorder.Snapshot(windowSeconds) with { Address = silo.SiloAddress.ToParsableString() });
    }
}

/// <summary>Places a grain on the silo its string key names (<see cref="SiloAddress.ToParsableString"/>), or nowhere.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class SiloPlacementAttribute() : PlacementAttribute(SiloPlacement.Instance);

[GenerateSerializer, Immutable, Alias("medserve.silo-placement")]
public sealed class SiloPlacement : PlacementStrategy
{
    public static readonly SiloPlacement Instance = new();
}

/// <summary>
/// Returns the silo the key names when it is an active, compatible member; otherwise refuses with
/// <see cref="ErrorKind.NotReady"/> (a silo that left) or <see cref="ErrorKind.InvalidInput"/> (not a silo address),
/// so a caller asking a dead silo gets an error at once rather than a grain placed elsewhere.
/// </summary>
public sealed class SiloPlacementDirector : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var key = target.GrainIdentity.Key.ToString() ?? "";
        SiloAddress wanted;
        try
        {
            wanted = SiloAddress.FromParsableString(key);
        }
        catch (Exception e) when (e is FormatException or ArgumentException or IndexOutOfRangeException or OverflowException)
        {
            throw MedServeException.Invalid($"'{key}' is not a silo address", "silo");
        }
        foreach (var candidate in context.GetCompatibleSilos(target))
        {
            if (candidate.Equals(wanted))
            {
                return Task.FromResult(candidate);
            }
        }
        throw MedServeException.NotReady($"silo {key} is not an active member of the cluster");
    }
}
