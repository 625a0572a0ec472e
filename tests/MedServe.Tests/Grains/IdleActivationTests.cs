using MedServe.Routing;
using MedServe.Tests.Support;

namespace MedServe.Tests.Grains;

/// <summary>
/// Grains whose keys come from callers, or that hold large data written once, do not stay in memory when they hold
/// nothing worth keeping (a real TestingHost silo; activations counted by Orleans' management grain).
/// </summary>
[Collection(GrainClusterCollection.Name)]
public sealed class IdleActivationTests(GrainClusterFixture fixture)
{
    [Fact]
    public async Task Asking_for_models_that_do_not_exist_leaves_no_activation_behind()
    {
        // Any caller can name any model (a made-up name in an inference path): each such question must not keep a model
        // grain in memory for the collection age.
        var router = new ModelRouter(fixture.Client);
        var before = await ActivationsAsync("ModelGrain");
        for (var i = 0; i < 20; i++)
        {
            var refused = await Assert.ThrowsAsync<MedServeException>(() => router.ResolveAsync($"made-up-{i}-{Guid.NewGuid():N}", null));
            Assert.Equal(ErrorKind.NotFound, refused.Kind);
        }
        Assert.Equal(ErrorKind.NotFound, (await Assert.ThrowsAsync<MedServeException>(() => router.ResolveAsync($"made-up-{Guid.NewGuid():N}", "2"))).Kind);

        // Deactivation follows each answer: wait for it (at most five seconds).
        await AssertBackToAsync("ModelGrain", before);
    }

    [Fact]
    public async Task Unknown_studies_and_stored_instances_leave_no_activation_behind()
    {
        var studies = await ActivationsAsync("StudyGrain");
        var instances = await ActivationsAsync("DicomInstanceGrain");
        for (var i = 0; i < 10; i++)
        {
            Assert.Null(await fixture.Client.GetGrain<IStudyGrain>($"2.25.{Guid.NewGuid().ToString("N")[..20]}").GetAsync());
        }
        // A stored instance is kept (encrypted) in storage, not in memory: 10 files of 256 KB.
        var uids = Enumerable.Range(0, 10).Select(_ => $"2.25.{Guid.NewGuid().ToString("N")[..20]}").ToArray();
        var file = new byte[256 * 1024];
        Random.Shared.NextBytes(file);
        foreach (var uid in uids)
        {
            await fixture.Client.GetGrain<IDicomInstanceGrain>(uid).StoreAsync(file);
        }
        await AssertBackToAsync("StudyGrain", studies);
        await AssertBackToAsync("DicomInstanceGrain", instances);

        // And it reads back as stored.
        Assert.Equal(file, await fixture.Client.GetGrain<IDicomInstanceGrain>(uids[3]).ReadAsync());
    }

    [Fact]
    public async Task A_shared_artifact_leaves_memory_after_it_is_stored_and_after_it_is_read()
    {
        var before = await ActivationsAsync("ArtifactGrain");
        var bytes = new byte[1 << 20];
        Random.Shared.NextBytes(bytes);
        var artifact = fixture.Client.GetGrain<IArtifactGrain>(MedServe.Inference.Packages.ArtifactStore.Hash(bytes));
        await artifact.PutAsync(bytes);
        await AssertBackToAsync("ArtifactGrain", before);
        Assert.Equal(bytes, await artifact.GetAsync());
        await AssertBackToAsync("ArtifactGrain", before);
    }

    private Task<int> ActivationsAsync(string type) => Activations.CountAsync(fixture.Client, type);

    private Task AssertBackToAsync(string type, int before) => Activations.AssertBackToAsync(fixture.Client, type, before);
}
