using MedServe.Grains;
using MedServe.Inference.Runtime;
using MedServe.Tests.Support;
using Orleans.TestingHost;

namespace MedServe.Tests.Grains;

/// <summary>
/// <see cref="ISiloStatsGrain"/> on a TestingHost cluster of two silos: each silo's grain runs on the silo its key
/// names, answers from that silo's recorder (started with the silo), and a silo that is not in the cluster is an
/// error at once, never a grain placed elsewhere.
/// </summary>
public sealed class SiloStatsGrainTests : IAsyncLifetime
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);

    private readonly string _data = Paths.TempDirectory("silo-stats");
    private readonly string _model = $"stats-grain-{Guid.NewGuid():N}";
    private InProcessTestCluster _cluster = null!;

    private IClusterClient Client => _cluster.Client;

    public async Task InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(2);
        builder.ConfigureSilo((options, silo) => silo
            .AddModelServing(_data, new SiloCapability(Capabilities.Cpu, "CPUExecutionProvider", "test"))
            .AddFileGrainStorage(StorageNames.State, Path.Combine(_data, "state")));
        _cluster = builder.Build();
        await _cluster.DeployAsync();
    }

    public async Task DisposeAsync()
    {
        await _cluster.DisposeAsync();
        Directory.Delete(_data, recursive: true);
    }

    [Fact]
    public async Task Each_silo_answers_for_itself_from_a_recorder_that_runs_since_silo_start()
    {
        // Recorded before any stats grain exists: the silos' recorders must already be listening.
        InferenceMetrics.RecordRequest(_model, "1", "success", TimeSpan.FromMilliseconds(2));

        var silos = await Client.GetGrain<IClusterInfoGrain>(0).ListSilosAsync();
        Assert.Equal(
            _cluster.Silos.Select(s => s.SiloAddress.ToParsableString()).Order(StringComparer.Ordinal),
            silos.Select(s => s.Address));
        foreach (var silo in silos)
        {
            var stats = await Client.GetGrain<ISiloStatsGrain>(silo.Address).GetAsync(60).WaitAsync(Bound);
            Assert.Equal(silo.Address, stats.Address);
            Assert.Equal(60, stats.WindowSeconds);
            Assert.Equal(Environment.ProcessorCount, stats.Cores);
            Assert.True(stats.MemoryBytes > 0);
            var deployment = Assert.Single(stats.Deployments, d => d.Model == _model);
            Assert.Equal(1, deployment.Outcomes["success"]);
            Assert.Equal(1, deployment.Points.Sum(p => p.Requests));
        }
    }

    [Fact]
    public async Task A_window_outside_one_to_3600_seconds_is_refused()
    {
        var grain = Client.GetGrain<ISiloStatsGrain>(_cluster.Silos[0].SiloAddress.ToParsableString());
        foreach (var window in new[] { 0, 3601 })
        {
            var e = await Assert.ThrowsAsync<MedServeException>(() => grain.GetAsync(window).WaitAsync(Bound));
            Assert.Equal(ErrorKind.InvalidInput, e.Kind);
            Assert.Equal("window", e.Field);
        }
        Assert.Equal(3600, (await grain.GetAsync(3600)).WindowSeconds);
    }

    [Fact]
    public async Task A_silo_not_in_the_cluster_is_an_error_not_a_grain_placed_elsewhere()
    {
        // Same host and port as a member but another generation (a restarted process), then an unknown port.
        var member = _cluster.Silos[0].SiloAddress;
        var strangers = new[]
        {
            SiloAddress.New(member.Endpoint, member.Generation + 1).ToParsableString(),
            SiloAddress.New(new System.Net.IPEndPoint(member.Endpoint.Address, 1), member.Generation).ToParsableString(),
        };
        foreach (var stranger in strangers)
        {
            var e = await Assert.ThrowsAsync<MedServeException>(() => Client.GetGrain<ISiloStatsGrain>(stranger).GetAsync(60).WaitAsync(Bound));
            Assert.Equal(ErrorKind.NotReady, e.Kind);
            Assert.Contains(stranger, e.Message, StringComparison.Ordinal);
        }

        var bad = await Assert.ThrowsAsync<MedServeException>(() => Client.GetGrain<ISiloStatsGrain>("not-a-silo").GetAsync(60).WaitAsync(Bound));
        Assert.Equal(ErrorKind.InvalidInput, bad.Kind);
    }

    [Fact]
    public async Task A_stopped_silo_is_an_error_once_it_has_left()
    {
        var leaving = _cluster.Silos[1];
        var address = leaving.SiloAddress.ToParsableString();
        Assert.Equal(address, (await Client.GetGrain<ISiloStatsGrain>(address).GetAsync(5).WaitAsync(Bound)).Address);

        await _cluster.StopSiloAsync(leaving);

        var e = await Assert.ThrowsAsync<MedServeException>(() => Client.GetGrain<ISiloStatsGrain>(address).GetAsync(5).WaitAsync(Bound));
        Assert.Equal(ErrorKind.NotReady, e.Kind);
    }
}
