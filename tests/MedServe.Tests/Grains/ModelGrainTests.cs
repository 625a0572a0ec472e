using MedServe.Routing;
using MedServe.Tests.Support;

namespace MedServe.Tests.Grains;

/// <summary>Model grains on a real (TestingHost) silo.</summary>
[Collection(GrainClusterCollection.Name)]
public sealed class ModelGrainTests(GrainClusterFixture fixture)
{
    [Fact]
    public async Task Asking_for_models_that_do_not_exist_leaves_no_activation_behind()
    {
        // Any caller can name any model (a made-up name in an inference path): each such question must not keep a model
        // grain in memory for the collection age.
        var router = new ModelRouter(fixture.Client);
        var before = await ModelActivationsAsync();
        for (var i = 0; i < 20; i++)
        {
            var refused = await Assert.ThrowsAsync<MedServeException>(() => router.ResolveAsync($"made-up-{i}-{Guid.NewGuid():N}", null));
            Assert.Equal(ErrorKind.NotFound, refused.Kind);
        }
        Assert.Equal(ErrorKind.NotFound, (await Assert.ThrowsAsync<MedServeException>(() => router.ResolveAsync($"made-up-{Guid.NewGuid():N}", "2"))).Kind);

        // Deactivation follows each answer: wait for it (at most five seconds).
        for (var i = 0; i < 50 && await ModelActivationsAsync() > before; i++)
        {
            await Task.Delay(100);
        }
        Assert.True(await ModelActivationsAsync() <= before, "model grains of made-up names stayed active");
    }

    private async Task<int> ModelActivationsAsync()
    {
        var stats = await fixture.Client.GetGrain<IManagementGrain>(0).GetSimpleGrainStatistics();
        // GrainType is the type's assembly-qualified name ("MedServe.Grains.ModelGrain,MedServe.Grains").
        return stats.Where(s => s.GrainType.Split(',')[0].EndsWith(".ModelGrain", StringComparison.Ordinal)).Sum(s => s.ActivationCount);
    }
}
