using Microsoft.Extensions.Hosting;

namespace MedServe.Grains.Monitoring;

/// <summary>Constructs the silo's <see cref="StatsRecorder"/> when the silo starts, so it sees requests from the first one.</summary>
internal sealed class StatsRecorderStart(StatsRecorder recorder) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        GC.KeepAlive(recorder);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
