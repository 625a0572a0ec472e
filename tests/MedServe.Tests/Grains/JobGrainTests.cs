using System.Globalization;
using MedServe.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace MedServe.Tests.Grains;

/// <summary>
/// Job grains on a real (TestingHost) silo with the logistic-regression sample deployed: the job list reads the job
/// index and wakes no job grain; ended jobs hold no activation.
/// </summary>
[Collection(GrainClusterCollection.Name)]
public sealed class JobGrainTests(GrainClusterFixture fixture)
{
    private async Task DeployLogregAsync()
    {
        await fixture.RegisterSampleAsync("breast-cancer-logreg");
        var deployment = fixture.Client.GetGrain<IDeploymentGrain>(GrainKeys.Deployment("breast-cancer-logreg", "1"));
        await deployment.DeployAsync(new DeploymentSpec());
        Assert.Equal(DeploymentState.Ready, (await deployment.WaitSettledAsync(TimeSpan.FromMinutes(1))).State);
    }

    internal static JobSubmission Rows(int count, string prefix = "r")
    {
        var rows = TestData.BreastCancer();
        return new JobSubmission
        {
            Model = "breast-cancer-logreg",
            Items = [.. Enumerable.Range(0, count).Select(i => new JobItem(prefix + i.ToString(CultureInfo.InvariantCulture),
                [TensorTypes.Create<float>("input", [1, 30], rows[i % rows.Count].Features)]))],
            Outputs = ["probabilities"],
        };
    }

    private async Task<JobInfo> WaitEndedAsync(string id)
    {
        for (var i = 0; i < 600; i++)
        {
            var info = await fixture.Client.GetGrain<IJobGrain>(id).GetAsync();
            if (info is { State: not JobState.Running })
            {
                return info;
            }
            await Task.Delay(100);
        }
        throw new Xunit.Sdk.XunitException($"job {id} did not end");
    }

    [Fact]
    public async Task Refused_submits_and_late_calls_leave_no_job_activation()
    {
        // Job grains are never collected when idle (a running job keeps feeding its items): every call that finds no
        // running job must let its activation go, or each made-up id or refused submit stays in memory for good.
        await fixture.Client.GetGrain<IManagementGrain>(0).ForceActivationCollection(TimeSpan.Zero);
        var before = await JobActivationsAsync();

        var unknownModel = await Assert.ThrowsAsync<MedServeException>(() =>
            fixture.Client.GetGrain<IJobGrain>($"refused-{Guid.NewGuid():N}").SubmitAsync(Rows(3) with { Model = $"made-up-{Guid.NewGuid():N}" }));
        Assert.Equal(ErrorKind.NotFound, unknownModel.Kind);
        var empty = await Assert.ThrowsAsync<MedServeException>(() =>
            fixture.Client.GetGrain<IJobGrain>($"refused-{Guid.NewGuid():N}").SubmitAsync(Rows(0)));
        Assert.Equal(ErrorKind.InvalidInput, empty.Kind);
        // A worker's late renewal, answer or resume for a job that is not there (ended and deleted meanwhile).
        Assert.False(await fixture.Client.GetGrain<IJobGrain>($"late-{Guid.NewGuid():N}").RenewAsync(1));
        await fixture.Client.GetGrain<IJobGrain>($"late-{Guid.NewGuid():N}").ReportAsync(1, [0], [new JobItemResult("r0", null, "late")]);
        await fixture.Client.GetGrain<IJobGrain>($"late-{Guid.NewGuid():N}").ResumeAsync();
        await Assert.ThrowsAsync<MedServeException>(() => fixture.Client.GetGrain<IJobGrain>($"late-{Guid.NewGuid():N}").CancelAsync());

        await Activations.AssertBackToAsync(fixture.Client, "JobGrain", before);
    }

    private Task<int> JobActivationsAsync() => Activations.CountAsync(fixture.Client, "JobGrain");

    [Fact]
    public async Task An_ended_jobs_deliveries_leave_the_silos_stream_cache()
    {
        await DeployLogregAsync();
        // The silo's own Orleans instruments (its meter factory's), not another cluster's in this test process.
        var meters = fixture.Cluster.Silos[0].ServiceProvider.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
        long purged = 0, added = 0;
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Scope == meters && instrument.Name is "orleans-streams-queue-cache-messages-added" or "orleans-streams-queue-cache-messages-purged")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            if (instrument.Name == "orleans-streams-queue-cache-messages-purged")
            {
                purged += value;
            }
            else
            {
                added += value;
            }
        });
        listener.Start();

        var id = $"cache-{Guid.NewGuid():N}"[..22];
        await fixture.Client.GetGrain<IJobGrain>(id).SubmitAsync(Rows(3000)); // several deliveries
        Assert.Equal(JobState.Completed, (await WaitEndedAsync(id)).State);

        // Each delivery leaves the cache JobGrain.StreamCacheTime after it was queued (Orleans purges on its own clock:
        // read its counts until every message added has been purged, for at most a minute).
        for (var i = 0; i < 300; i++)
        {
            (purged, added) = (0, 0);
            listener.RecordObservableInstruments();
            if (added > 0 && purged == added)
            {
                break;
            }
            await Task.Delay(200);
        }
        Assert.True(added > 0, "the job's deliveries went through this silo's stream cache");
        Assert.Equal(added, purged);
    }

    [Fact]
    public async Task Listing_ended_jobs_reads_the_index_and_wakes_no_job_grain()
    {
        await DeployLogregAsync();
        var ids = Enumerable.Range(0, 3).Select(i => $"list-{i}-{Guid.NewGuid():N}"[..24]).ToArray();
        foreach (var id in ids)
        {
            await fixture.Client.GetGrain<IJobGrain>(id).SubmitAsync(Rows(50));
        }
        foreach (var id in ids)
        {
            Assert.Equal(JobState.Completed, (await WaitEndedAsync(id)).State);
        }

        // Ended jobs deactivate; make sure every idle activation is gone.
        await fixture.Client.GetGrain<IManagementGrain>(0).ForceActivationCollection(TimeSpan.Zero);
        for (var i = 0; i < 50 && await JobActivationsAsync() > 0; i++)
        {
            await Task.Delay(100);
        }
        Assert.Equal(0, await JobActivationsAsync());

        var listed = await fixture.Client.GetGrain<IJobIndexGrain>(0).ListAsync();
        foreach (var id in ids)
        {
            var job = Assert.Single(listed, j => j.Id == id);
            Assert.Equal(JobState.Completed, job.State);
            Assert.Equal(50, job.Total);
            Assert.Equal(50, job.Succeeded);
            Assert.Equal("breast-cancer-logreg", job.Model);
        }
        Assert.Equal(0, await JobActivationsAsync());
    }

    [Fact]
    public async Task Results_are_stored_in_appended_chunks_and_read_by_page_in_item_order()
    {
        await DeployLogregAsync();
        var id = "pages-" + Guid.NewGuid().ToString("N")[..8];
        var job = fixture.Client.GetGrain<IJobGrain>(id);
        await job.SubmitAsync(Rows(10_000));
        var done = await WaitEndedAsync(id);
        Assert.Equal(JobState.Completed, done.State);
        Assert.Equal(10_000, done.Succeeded);

        var page = await job.GetResultsAsync(4000, 200);
        Assert.Equal(Enumerable.Range(4000, 200).Select(i => $"r{i}"), page.Select(r => r.ItemId));
        var rows = TestData.BreastCancer();
        Assert.Equal(rows[4000 % rows.Count].PBenignLogreg, page[0].Outputs![0].AsSpan<float>()[1], 4);
        var all = await job.GetResultsAsync();
        Assert.Equal(Enumerable.Range(0, 10_000).Select(i => $"r{i}"), all.Select(r => r.ItemId));

        // Items in chunks written once, answers in parts appended per item chunk: no record holds the whole set.
        var files = Directory.GetFiles(Path.Combine(fixture.DataDirectory, "state"), Uri.EscapeDataString(id) + ".*", SearchOption.AllDirectories);
        Assert.Equal(3, files.Count(f => f.Contains(".job-items-", StringComparison.Ordinal)));
        Assert.True(files.Count(f => f.Contains(".job-results-", StringComparison.Ordinal)) >= 3);

        await job.DeleteAsync();
        Assert.Empty(Directory.GetFiles(Path.Combine(fixture.DataDirectory, "state"), Uri.EscapeDataString(id) + ".*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task A_retried_submit_answers_the_same_job_and_other_content_under_its_id_is_a_conflict()
    {
        await DeployLogregAsync();
        var id = "again-" + Guid.NewGuid().ToString("N")[..8];
        var first = await fixture.Client.GetGrain<IJobGrain>(id).SubmitAsync(Rows(40));
        var retried = await fixture.Client.GetGrain<IJobGrain>(id).SubmitAsync(Rows(40));
        Assert.Equal(first.CreatedAt, retried.CreatedAt);
        Assert.Equal(40, retried.Total);

        var conflict = await Assert.ThrowsAsync<MedServeException>(() => fixture.Client.GetGrain<IJobGrain>(id).SubmitAsync(Rows(41)));
        Assert.Equal(ErrorKind.Conflict, conflict.Kind);
        Assert.Equal("id", conflict.Field);
        Assert.DoesNotContain(id, conflict.Message, StringComparison.Ordinal); // a job id may be a patient identifier: never echoed
        Assert.Equal(40, (await WaitEndedAsync(id)).Succeeded);
    }

    [Fact]
    public async Task An_item_the_runtime_fails_is_sent_again_later_and_gets_that_error_only_after_its_last_attempt()
    {
        // ConstantOfShape: an item's values are its output's shape. [2^30, 2^30] floats (4 EiB) run ONNX Runtime out of
        // memory on every try: a 503, not the item's fault. [2^40, 2^40] overflows, which the graph refuses: the item's.
        var manifest = new ModelManifest
        {
            Name = "zeros-job",
            Version = "1",
            Inputs = [new TensorSpec { Name = "shape", Datatype = TensorDatatype.INT64, Shape = [2] }],
            Outputs = [new TensorSpec { Name = "zeros", Datatype = TensorDatatype.FP32, Shape = [-1, -1] }],
        };
        var onnx = OnnxBuilder.Zeros();
        var sha = await new MedServe.Inference.Packages.ArtifactStore(Path.Combine(fixture.DataDirectory, "artifacts")).PutAsync(onnx);
        var model = fixture.Client.GetGrain<IModelGrain>(manifest.Name);
        if (await model.GetVersionAsync("1") is null)
        {
            await model.RegisterVersionAsync(manifest, sha, onnx.Length);
        }
        var deployment = fixture.Client.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(manifest.Name, "1"));
        await deployment.DeployAsync(new DeploymentSpec());
        Assert.Equal(DeploymentState.Ready, (await deployment.WaitSettledAsync(TimeSpan.FromMinutes(1))).State);

        var id = "later-" + Guid.NewGuid().ToString("N")[..8];
        var job = fixture.Client.GetGrain<IJobGrain>(id);
        await job.SubmitAsync(new JobSubmission
        {
            Model = manifest.Name,
            Items =
            [
                new JobItem("fits", [TensorTypes.Create<long>("shape", [2], [2, 3])]),
                new JobItem("too-big", [TensorTypes.Create<long>("shape", [2], [1L << 30, 1L << 30])]),
                new JobItem("overflows", [TensorTypes.Create<long>("shape", [2], [1L << 40, 1L << 40])]),
            ],
        });
        var done = await WaitEndedAsync(id);
        Assert.Equal(JobState.Completed, done.State);
        Assert.Equal(1, done.Succeeded);
        Assert.Equal(2, done.Failed);

        var results = (await job.GetResultsAsync()).ToDictionary(r => r.ItemId);
        Assert.Equal([2L, 3L], results["fits"].Outputs![0].Shape);
        // Only the job's retry-later path writes this: five sends, each failed by the runtime, then its error.
        Assert.Equal("not run after 5 attempts: zeros-job:1 could not run the request just now (ONNX Runtime Fail: out of memory); the input is not at fault",
            results["too-big"].Error);
        // The item's own fault is its answer at once.
        Assert.Equal("zeros-job:1 rejected the input values (ONNX Runtime Fail)", results["overflows"].Error);
    }
}
