namespace MedServe.Tests.Support;

/// <summary>Counts a grain class's activations in a cluster, through Orleans' management grain.</summary>
public static class Activations
{
    /// <summary>Activations of the grain class named <paramref name="type"/> (its simple name, e.g. <c>JobGrain</c>) on every silo.</summary>
    public static async Task<int> CountAsync(IGrainFactory grains, string type)
    {
        var stats = await grains.GetGrain<IManagementGrain>(0).GetSimpleGrainStatistics();
        // GrainType is the class's assembly-qualified name ("MedServe.Grains.Jobs.JobGrain,MedServe.Grains").
        return stats.Where(s => s.GrainType.Split(',')[0].EndsWith("." + type, StringComparison.Ordinal)).Sum(s => s.ActivationCount);
    }

    /// <summary>
    /// Deactivation follows a call's answer: waits (at most five seconds) for the count to fall back to
    /// <paramref name="before"/> and fails naming how many stayed.
    /// </summary>
    public static async Task AssertBackToAsync(IGrainFactory grains, string type, int before)
    {
        for (var i = 0; i < 50 && await CountAsync(grains, type) > before; i++)
        {
            await Task.Delay(100);
        }
        var now = await CountAsync(grains, type);
        Assert.True(now <= before, $"{now - before} {type} activation(s) stayed");
    }
}
