using MedServe.Grains.Monitoring;
using MedServe.Grains.Placement;
using MedServe.Grains.Protection;
using MedServe.Grains.Storage;
using MedServe.Inference.Packages;
using MedServe.Inference.Runtime;
using MedServe.Routing;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.Internal;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Placement;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Runtime.Hosting;

namespace MedServe.Grains;

/// <summary>Registers what the grains need on a silo.</summary>
public static class GrainsHosting
{
    /// <summary>The Data Protection application name every silo shares, so they derive the same keys from one ring.</summary>
    public const string DataProtectionApplication = "medserve";

    /// <summary>Publishes what this silo offers (accelerator, execution provider, labels) as silo metadata.</summary>
    private static ISiloBuilder AddCapabilities(this ISiloBuilder silo, SiloCapability capability, IReadOnlyDictionary<string, string>? labels)
    {
        var metadata = new Dictionary<string, string>
        {
            [Capabilities.AcceleratorKey] = capability.Accelerator,
            [Capabilities.ExecutionProviderKey] = capability.ExecutionProvider,
            [Capabilities.SourceKey] = capability.Source,
        };
        if (capability.FallbackReason is { } reason)
        {
            metadata[Capabilities.FallbackReasonKey] = reason;
        }
        foreach (var (key, value) in labels ?? new Dictionary<string, string>())
        {
            metadata[Capabilities.LabelPrefix + key] = value;
        }
        return silo.UseSiloMetadata(metadata);
    }

    /// <summary>
    /// Everything a silo needs to host replicas: its capability published as silo metadata (placement reads it),
    /// the artifact store under <paramref name="dataDirectory"/>/artifacts, ONNX Runtime options, placement.
    /// </summary>
    public static ISiloBuilder AddModelServing(this ISiloBuilder silo, string dataDirectory, SiloCapability capability,
        IReadOnlyDictionary<string, string>? labels = null, int intraOpThreads = 1, bool shareArtifacts = false)
    {
        silo.Services.AddSingleton(new ArtifactSharing(shareArtifacts));
        silo.Services.TryAddSingleton(TimeProvider.System);
        // A call that times out tells its grain (Orleans cancels the callee's token): a replica then skips the request
        // instead of running it for a caller that has given up (IReplicaGrain.InferAsync).
        silo.Configure<Orleans.Configuration.SiloMessagingOptions>(o => o.CancelRequestOnTimeout = true);
        silo.AddCapabilities(capability, labels);
        var runtime = new RuntimeOptions
        {
            Accelerator = capability.Accelerator,
            CudaWorks = capability.ExecutionProvider == AcceleratorProbe.Cuda,
            IntraOpThreads = intraOpThreads,
        };
        silo.Services.AddSingleton(new ArtifactStore(Path.Combine(dataDirectory, "artifacts")));
        silo.Services.AddSingleton(Microsoft.Extensions.Options.Options.Create(runtime));
        // One set of ONNX Runtime threads per silo, shared by its replicas (ExecutionPool), and the directory through
        // which front ends on the silo reach a local replica without a grain message (LocalReplicas).
        silo.Services.AddSingleton(_ => ExecutionPool.ForCores(intraOpThreads));
        silo.Services.AddSingleton<LocalReplicas>();
        silo.Services.AddSingleton<ILocalReplicas>(sp => sp.GetRequiredService<LocalReplicas>());
        silo.Services.AddSingleton<PackageImporter>();
        silo.Services.AddPlacementFilter<AcceleratorPlacementFilterStrategy, AcceleratorPlacementFilterDirector>(ServiceLifetime.Singleton);
        silo.Services.AddPlacementDirector<ReplicaSpreadPlacement, ReplicaSpreadPlacementDirector>();
        silo.Services.AddPlacementDirector<SiloPlacement, SiloPlacementDirector>();
        silo.Services.AddHostedService<PendingDeploymentWaker>();
        // Live figures for the dashboard (ISiloStatsGrain): the recorder listens from silo start, not from the
        // first stats call, so the hosted service resolves it at once.
        silo.Services.AddSingleton(sp => new StatsRecorder(sp.GetService<TimeProvider>() ?? TimeProvider.System));
        silo.Services.AddHostedService<StatsRecorderStart>();
        // Job items travel on memory streams: no broker to run. Durability is the job grain's (stored items,
        // leases, results by item id), so a stream queue lost with its silo costs a resend, not an item.
        silo.AddMemoryStreams(JobStreams.Provider, streams => streams.ConfigureCacheEviction(eviction => eviction.Configure(o =>
        {
            // A delivered message is of no further use (the job grain redelivers what is not answered), but memory
            // streams keep each one until messages 30 minutes newer arrive: after a burst of job items, never, and the
            // silo held every delivery of every recent job. Keep a message only while its worker may still be reading
            // it. The purge takes a message older than DataMinTimeInCache whose age behind the newest exceeds
            // DataMaxAgeInCache: below zero, the newest (the job's last delivery) goes too.
            o.DataMinTimeInCache = Jobs.JobGrain.StreamCacheTime;
            o.DataMaxAgeInCache = TimeSpan.FromTicks(-1);
        })));
        silo.AddMemoryGrainStorage("PubSubStore");
        silo.Services.AddHostedService<Jobs.JobResumer>();
        // Job items and results are encrypted at rest (JobGrain). Where the keys live is the host's choice: files
        // (PersistKeysToFileSystem, the embedded node) or the cluster's grain storage (UseGrainKeyRing).
        silo.Services.AddDataProtection().SetApplicationName(DataProtectionApplication);
        silo.Services.TryAddSingleton(new KeyRingSharing(Shared: false));
        return silo;
    }

    /// <summary>
    /// Keeps the Data Protection key ring in the cluster's grain storage (<see cref="IDataProtectionKeysGrain"/>: Redis
    /// in a cluster), so every silo encrypts and decrypts with the same keys; each silo reloads the ring every
    /// minute (<see cref="ClusterKeyManager"/>) to learn of keys another created. Replaces any key repository configured
    /// before. Data Protection's start-up preload is removed: the ring can be read only once the silo is active
    /// (<see cref="GrainKeyRepository"/>).
    /// </summary>
    public static ISiloBuilder UseGrainKeyRing(this ISiloBuilder silo)
    {
        var services = silo.Services;
        services.AddDataProtection().SetApplicationName(DataProtectionApplication);
        services.AddSingleton<GrainKeyRepository>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => sp.GetRequiredService<GrainKeyRepository>());
        services.AddOptions<KeyManagementOptions>().Configure<GrainKeyRepository>((o, repository) => o.XmlRepository = repository);
        services.AddSingleton<IKeyManager>(sp => new ClusterKeyManager(new XmlKeyManager(
            sp.GetRequiredService<IOptions<KeyManagementOptions>>(), sp.GetRequiredService<IActivator>(), sp.GetRequiredService<ILoggerFactory>())));
        services.RemoveAll<KeyRingSharing>();
        services.AddSingleton(new KeyRingSharing(Shared: true));
        foreach (var preload in services.Where(d => d.ServiceType == typeof(IHostedService) && !d.IsKeyedService
                     && d.ImplementationType?.Name == "DataProtectionHostedService").ToList())
        {
            services.Remove(preload);
        }
        return silo;
    }

    /// <summary>Grain state as JSON files under <paramref name="directory"/> (the embedded node's store).</summary>
    public static ISiloBuilder AddFileGrainStorage(this ISiloBuilder silo, string name, string directory)
    {
        silo.Services.AddGrainStorage(name, (_, _) => new FileGrainStorage(directory));
        return silo;
    }
}
