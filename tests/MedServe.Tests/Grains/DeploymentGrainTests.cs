using MedServe.Tests.Support;

namespace MedServe.Tests.Grains;

/// <summary>Deployment and replica grains on a real (TestingHost) silo with real ONNX Runtime sessions.</summary>
[Collection(GrainClusterCollection.Name)]
public sealed class DeploymentGrainTests(GrainClusterFixture fixture)
{
    [Fact]
    public async Task Deploying_walks_the_state_machine_from_loading_to_ready_and_undeploy_unloads()
    {
        await fixture.RegisterSampleAsync("breast-cancer-mlp");
        var deployment = fixture.Client.GetGrain<IDeploymentGrain>(GrainKeys.Deployment("breast-cancer-mlp", "1"));

        var started = await deployment.DeployAsync(new DeploymentSpec());
        Assert.Equal(DeploymentState.Loading, started.State);

        var ready = await deployment.WaitSettledAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(DeploymentState.Ready, ready.State);
        Assert.True(ready.Validation!.Passed);
        var replica = Assert.Single(ready.Replicas);
        Assert.Equal("CPUExecutionProvider", replica.ExecutionProvider);
        Assert.True((await fixture.Client.GetGrain<IModelGrain>("breast-cancer-mlp").GetVersionAsync("1"))!.Deployed);

        var row = TestData.BreastCancer()[1];
        var response = await fixture.Client.GetGrain<IReplicaGrain>(replica.Key).InferAsync(new InferenceRequest([TensorTypes.Create<float>("input", [1, 30], row.Features)], ["probabilities"], "grain-call"));
        Assert.Equal("grain-call", response.Id);
        Assert.InRange(Math.Abs(response.Outputs[0].AsSpan<float>()[1] - row.PBenignMlp), 0, 1e-5);

        var unloaded = await deployment.UndeployAsync();
        Assert.Equal(DeploymentState.Unloaded, unloaded.State);
        Assert.Empty(unloaded.Replicas);
        var error = await Assert.ThrowsAsync<MedServeException>(() => fixture.Client.GetGrain<IReplicaGrain>(replica.Key).InferAsync(new InferenceRequest([TensorTypes.Create<float>("input", [1, 30], new float[30])])));
        Assert.Equal(ErrorKind.NotReady, error.Kind);
        Assert.False((await fixture.Client.GetGrain<IModelGrain>("breast-cancer-mlp").GetVersionAsync("1"))!.Deployed);
    }

    [Fact]
    public async Task A_replica_that_was_deactivated_reloads_its_session_on_the_next_call()
    {
        await fixture.RegisterSampleAsync("breast-cancer-logreg");
        var deployment = fixture.Client.GetGrain<IDeploymentGrain>(GrainKeys.Deployment("breast-cancer-logreg", "1"));
        await deployment.DeployAsync(new DeploymentSpec());
        var ready = await deployment.WaitSettledAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(DeploymentState.Ready, ready.State);
        var replica = fixture.Client.GetGrain<IReplicaGrain>(ready.Replicas[0].Key);

        // Deactivate every idle grain, the replica among them.
        await fixture.Client.GetGrain<IManagementGrain>(0).ForceActivationCollection(TimeSpan.Zero);

        var row = TestData.BreastCancer()[0];
        var response = await replica.InferAsync(new InferenceRequest([TensorTypes.Create<float>("input", [1, 30], row.Features)]));
        Assert.InRange(Math.Abs(response.Outputs[0].AsSpan<float>()[1] - row.PBenignLogreg), 0, 1e-5);
    }

    [Fact]
    public async Task Errors_cross_the_grain_boundary_with_their_kind_and_field()
    {
        await fixture.RegisterSampleAsync("diabetes-linear");
        var deployment = fixture.Client.GetGrain<IDeploymentGrain>(GrainKeys.Deployment("diabetes-linear", "1"));
        await deployment.DeployAsync(new DeploymentSpec());
        var ready = await deployment.WaitSettledAsync(TimeSpan.FromMinutes(1));
        var replica = fixture.Client.GetGrain<IReplicaGrain>(ready.Replicas[0].Key);

        var bad = new InferenceRequest([TensorTypes.Create<double>("input", [1, 10], new double[10])]);
        var error = await Assert.ThrowsAsync<MedServeException>(() => replica.InferAsync(bad));
        Assert.Equal(ErrorKind.InvalidInput, error.Kind);
        Assert.Equal("input", error.Field);
        Assert.Contains("must be FP32, got FP64", error.Message, StringComparison.Ordinal);

        var missing = await Assert.ThrowsAsync<MedServeException>(() =>
            fixture.Client.GetGrain<IDeploymentGrain>(GrainKeys.Deployment("diabetes-linear", "99")).DeployAsync(new DeploymentSpec()));
        Assert.Equal(ErrorKind.NotFound, missing.Kind);
    }

    [Fact]
    public async Task Status_reads_while_replicas_change_never_write_back_a_stale_replica_set()
    {
        // GetAsync refreshes where replicas live across an await; a scale that swaps the replica set meanwhile must win.
        await fixture.RegisterSampleAsync("ct-mr-classifier");
        var deployment = fixture.Client.GetGrain<IDeploymentGrain>(GrainKeys.Deployment("ct-mr-classifier", "1"));
        await deployment.DeployAsync(new DeploymentSpec { Replicas = 1 });
        Assert.Equal(DeploymentState.Ready, (await deployment.WaitSettledAsync(TimeSpan.FromMinutes(1))).State);
        try
        {
            foreach (var replicas in Enumerable.Repeat(new[] { 3, 1, 2, 1 }, 5).SelectMany(x => x))
            {
                using var stop = new CancellationTokenSource();
                // Readers keep a status read in flight at every moment of the rollout (calls queue on the grain).
                var readers = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
                {
                    while (!stop.IsCancellationRequested)
                    {
                        await deployment.GetAsync();
                    }
                })).ToArray();
                await deployment.DeployAsync(new DeploymentSpec { Replicas = replicas });
                var settled = await deployment.WaitSettledAsync(TimeSpan.FromMinutes(1));
                Assert.Equal((DeploymentState.Ready, false, null), (settled.State, settled.Updating, settled.Reason));
                await Task.Delay(50);
                await stop.CancelAsync();
                await Task.WhenAll(readers);

                var info = await deployment.GetAsync();
                var expected = Enumerable.Range(0, replicas).Select(i => GrainKeys.Replica("ct-mr-classifier", "1", i, "any")).ToArray();
                Assert.Equal(expected, info.Replicas.Select(r => r.Key).Order(StringComparer.Ordinal).ToArray());
                Assert.Equal(expected, (await deployment.GetRouteAsync()).ReplicaKeys.Order(StringComparer.Ordinal).ToArray());
            }
        }
        finally
        {
            await deployment.UndeployAsync();
        }
    }
}
