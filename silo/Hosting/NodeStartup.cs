using MedServe.Grains;

namespace MedServe.Silo.Hosting;

/// <summary>Whether the node has finished starting (samples imported, deployments restored and settled) and is not stopping.</summary>
public sealed class NodeReadiness
{
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _draining;

    /// <summary>Started and not stopping: what <c>/v2/health/ready</c> reports.</summary>
    public bool IsReady => _ready.Task.IsCompleted && !_draining;

    /// <summary>A graceful stop has begun: still serving, but clients should go elsewhere.</summary>
    public bool IsDraining => _draining;

    public Task WhenReady => _ready.Task;

    internal void MarkReady() => _ready.TrySetResult();

    internal void MarkDraining() => _draining = true;
}

/// <summary>
/// After the silo starts: imports the sample packages (once), brings back every deployment that was
/// running before a restart, waits for them to settle, then reports ready.
/// </summary>
internal sealed partial class NodeStartup(
    IGrainFactory grains,
    PackageImporter importer,
    NodeReadiness readiness,
    IHostApplicationLifetime lifetime,
    Microsoft.Extensions.Options.IOptions<MedServe.Dashboard.Security.SecurityOptions> security,
    NodeOptions options,
    IReadOnlyList<string> importDirectories,
    ILogger<NodeStartup> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            foreach (var dir in importDirectories)
            {
                var n = await importer.ImportDirectoryAsync(dir, stoppingToken);
                Imported(logger, n, dir);
            }
            await BootstrapAdminKeyAsync();
            var keys = await grains.GetGrain<ICatalogGrain>(0).ListDeploymentsAsync();
            var settled = await Task.WhenAll(keys.Select(k => grains.GetGrain<IDeploymentGrain>(k).WaitSettledAsync(TimeSpan.FromMinutes(2))));
            foreach (var d in settled)
            {
                Restored(logger, d.Model, d.Version, d.State);
            }
        }
        catch (Exception e) when (!stoppingToken.IsCancellationRequested)
        {
            // Logged, and the node still reports ready: what imported serves, a bad package is skipped.
            StartupFailed(logger, e);
        }
        // Ready means serving: wait for the HTTP server to listen too (it starts after the hosted services).
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using (lifetime.ApplicationStarted.Register(() => started.TrySetResult()))
        {
            try
            {
                await started.Task.WaitAsync(stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
        readiness.MarkReady();
        Ready(logger);
    }

    /// <summary>
    /// A cluster's first start: with no key stored and none given (MEDSERVE_ADMIN_KEY), creates an admin key, prints it
    /// once to the console (not the log) and leaves it in a file only this user can read.
    /// </summary>
    private async Task BootstrapAdminKeyAsync()
    {
        if (!string.IsNullOrEmpty(security.Value.AdminKey) || security.Value.InsecureDev)
        {
            return;
        }
        if (await grains.GetGrain<IKeyStoreGrain>(0).BootstrapAsync() is not { } created)
        {
            return;
        }
        var file = Path.Combine(Path.GetFullPath(options.Data), "admin-key");
        await File.WriteAllTextAsync(file, created.Key + "\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
        Console.WriteLine($"""

            MedServe created the first admin key of this cluster (stored only as a hash; shown this once):

                {created.Key}

            Sign in with it at the web app, or send it as 'Authorization: Bearer <key>'. A copy is in {file}
            (readable by this user only): store the key somewhere safe and delete that file. Lost it? Start with
            MEDSERVE_ADMIN_KEY set, create a new admin key, and revoke key {created.Info.Id}.

            """);
        AdminKeyCreated(logger, created.Info.Id);
    }

    [LoggerMessage(2005, LogLevel.Warning, "Created the first admin key, id {KeyId}; it was printed to the console once")]
    private static partial void AdminKeyCreated(ILogger logger, string keyId);

    [LoggerMessage(2001, LogLevel.Information, "Imported {Count} new package(s) from {Directory}")]
    private static partial void Imported(ILogger logger, int count, string directory);

    [LoggerMessage(2002, LogLevel.Information, "Deployment {Model}:{Version} is {State}")]
    private static partial void Restored(ILogger logger, string model, string version, DeploymentState state);

    [LoggerMessage(2004, LogLevel.Information, "MedServe node ready")]
    private static partial void Ready(ILogger logger);

    [LoggerMessage(2003, LogLevel.Error, "Start-up import or restore failed")]
    private static partial void StartupFailed(ILogger logger, Exception exception);
}
