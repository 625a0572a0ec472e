using MedServe.Protocol;
using MedServe.Dashboard;
using Orleans.Dashboard;
using MedServe.Grains;
using MedServe.Inference.Packages;
using MedServe.Inference.Runtime;
using MedServe.Routing;
using MedServe.Medical.Dicom;
using MedServe.Silo.Api;
using MedServe.Dashboard.Security;
using System.Net;
using Microsoft.AspNetCore.DataProtection;
using OpenTelemetry.Metrics;

namespace MedServe.Silo.Hosting;

/// <summary>Builds the embedded node: one silo with localhost clustering, file-backed state, the APIs.</summary>
public static class MedServeNode
{
    /// <summary>Command-line switches and the settings they set.</summary>
    public static readonly Dictionary<string, string> Switches = new()
    {
        ["--data"] = "MedServe:Data",
        ["--import"] = "MedServe:Import",
        ["--silo-port"] = "MedServe:SiloPort",
        ["--gateway-port"] = "MedServe:GatewayPort",
        ["--accelerator"] = "MedServe:Accelerator",
        ["--label"] = "MedServe:Labels",
        ["--cluster"] = "MedServe:Cluster",
        ["--cluster-id"] = "MedServe:ClusterId",
        ["--advertise"] = "MedServe:Advertise",
        ["--max-infer-bytes"] = "MedServe:MaxInferBytes",
        ["--intra-op-threads"] = "MedServe:IntraOpThreads",
        ["--drain-seconds"] = "MedServe:DrainSeconds",
        ["--admin-key"] = "MedServe:AdminKey",
        ["--insecure-dev"] = "MedServe:InsecureDev",
    };

    /// <summary>Builds the node; <paramref name="services"/> may replace services (a test's clock).</summary>
    public static WebApplication Build(string[] args, Action<IServiceCollection>? services = null)
    {
        args = SecurityHosting.ExpandFlags(args);
        // Settings (appsettings.json) beside the program, not in the working directory: started from anywhere, the
        // node keeps its log levels. Relative paths (--data, --import) still resolve against the working directory.
        // The application is the silo wherever it is hosted (a test host too): its static web assets manifests are
        // named after it.
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = args,
            ContentRootPath = AppContext.BaseDirectory,
            ApplicationName = typeof(MedServeNode).Assembly.GetName().Name,
        });
        builder.Configuration.AddCommandLine(args, Switches);
        builder.AddMedServeSilo();
        services?.Invoke(builder.Services);
        var app = builder.Build();
        app.MapMedServe();
        return app;
    }

    /// <summary>Orleans silo, storage, runtime options, the APIs' services.</summary>
    public static WebApplicationBuilder AddMedServeSilo(this WebApplicationBuilder builder)
    {
        var options = builder.Configuration.GetSection("MedServe").Get<NodeOptions>() ?? new NodeOptions();
        var data = Path.GetFullPath(options.Data);
        Directory.CreateDirectory(data);
        builder.Services.AddSingleton(options);

        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = Math.Max(options.MaxInferBytes, 512L * 1024 * 1024) + 1);
        builder.Services.AddProblemDetails();
        // Data Protection (sign-in cookies, antiforgery, job data at rest): the embedded node keeps its keys with its
        // data, not in the user profile; a cluster keeps them in its grain storage (UseGrainKeyRing below), shared by all silos.
        builder.Services.AddDataProtection().SetApplicationName(GrainsHosting.DataProtectionApplication)
            .PersistKeysToFileSystem(new DirectoryInfo(Path.Combine(data, "keys")));
        // The web app: pages, management API (snake_case JSON), OpenAPI, the Orleans Dashboard (silo side below).
        builder.Services.AddMedServeWebApp(builder.Configuration);
        // The web app's files (its own, MudBlazor's, blazor.web.js) straight from the build output in every
        // environment, not only in Development or after 'dotnet publish'.
        builder.WebHost.UseStaticWebAssets();
        // Latency and outcome histograms of our own and Orleans', scraped at /metrics (Prometheus text format).
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(InferenceMetrics.MeterName, "Microsoft.Orleans", "Microsoft.AspNetCore.Hosting")
            .AddPrometheusExporter());
        // Traces (MedServe:Tracing, OTEL_EXPORTER_OTLP_*): off unless configured; when on, grain calls carry the trace.
        var tracing = builder.AddMedServeTracing();
        builder.Services.AddSingleton<ModelRouter>();
        // DICOM on the V2 infer endpoint: GDCM decodes in worker processes started from this program (see Program.cs).
        var dicom = builder.Configuration.GetSection(DicomOptions.Section).Get<DicomOptions>() ?? new DicomOptions();
        builder.Services.AddSingleton(sp => new DicomDecoderPool(DicomWorkerCommand.ForAssembly(typeof(MedServeNode).Assembly.Location), dicom,
            sp.GetRequiredService<ILogger<DicomDecoderPool>>()));
        builder.Services.AddSingleton<DicomImageInput>();
        builder.Services.AddSingleton<MedServe.Silo.Api.DicomStudyJobs>();
        // DICOM jobs and the web app's Try-it page: the web app's project cannot decode, the silo lends it this.
        builder.Services.AddSingleton<MedServe.Dashboard.Services.IDicomInputs, MedServe.Silo.Api.DicomInputs>();
        builder.Services.AddSingleton<NodeReadiness>();
        // Graceful stop: drain, then Kestrel lets in-flight requests finish, then the silo leaves (see ShutdownDrain).
        builder.Services.AddHostedService<ShutdownDrain>();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(options.EffectiveDrainSeconds) + ShutdownDrain.StopBudget);

        var capability = AcceleratorProbe.Resolve(options.Accelerator);
        var labels = options.ParseLabels();
        builder.Services.AddSingleton(capability);
        var siloPort = options.SiloPort > 0 ? options.SiloPort : FreePort.PreferOrAny(11111);
        var gatewayPort = options.GatewayPort > 0 ? options.GatewayPort : FreePort.PreferOrAny(30000);
        var redis = options.RedisEndpoint();
        builder.UseOrleans(silo =>
        {
            if (redis is null)
            {
                // Embedded: one silo, its own membership, state in files under --data.
                silo.UseLocalhostClustering(siloPort, gatewayPort, serviceId: ClusterAddress.ServiceId, clusterId: ClusterAddress.EmbeddedClusterId);
                silo.AddFileGrainStorage(StorageNames.State, Path.Combine(data, "state"));
            }
            else
            {
                silo.UseRedisCluster(redis, options.ClusterId, IPAddress.Parse(options.Advertise), siloPort, gatewayPort);
                silo.UseGrainKeyRing();
            }
            silo.AddModelServing(data, capability, labels, options.IntraOpThreads, shareArtifacts: redis is not null);
            if (tracing)
            {
                // Orleans' own spans for every grain call, and the trace id carried across calls and silos.
                silo.AddActivityPropagation();
            }
            // Orleans Dashboard: every silo collects grain statistics; the web app shows them under /orleans.
            silo.AddDashboard();
        });

        // Registered after UseOrleans, so it starts once the silo is up.
        var imports = ImportDirectories(options.Import);
        builder.Services.AddHostedService(sp => ActivatorUtilities.CreateInstance<NodeStartup>(sp, (IReadOnlyList<string>)imports));
        return builder;
    }

    public static WebApplication MapMedServe(this WebApplication app)
    {
        var readiness = app.Services.GetRequiredService<NodeReadiness>();
        app.Use((context, next) =>
        {
            if (readiness.IsDraining)
            {
                // Stopping: answer this request, then let the client reconnect (to another silo, behind a balancer).
                context.Response.Headers.Connection = "close";
            }
            return next(context);
        });
        app.MapMedServeWebApp();
        app.MapV2Api();
        app.MapRecordsApi();
        app.MapFhirApi();
        app.MapDicomWeb();
        // Prometheus scrapes without a key unless MedServe:AnonymousMetrics is false (then: operators only).
        var metrics = app.MapPrometheusScrapingEndpoint("/metrics");
        if (app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<SecurityOptions>>().Value.AnonymousMetrics)
        {
            metrics.AllowAnonymous();
        }
        else
        {
            metrics.RequireAuthorization(Permissions.Operate);
        }
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            foreach (var url in app.Urls)
            {
                Console.WriteLine($"MedServe web app: {url.TrimEnd('/')}/  (V2 API under /v2, management API under /api)");
            }
            var capability = app.Services.GetRequiredService<SiloCapability>();
            Console.WriteLine($"Accelerator {capability.Accelerator} ({capability.Source}), execution provider {capability.ExecutionProvider}"
                + (capability.FallbackReason is { } why ? $": {why}" : ""));
        });
        return app;
    }

    /// <summary>The directories named, or for "auto" the nearest <c>samples/</c> above the working or program directory.</summary>
    private static string[] ImportDirectories(string setting)
    {
        if (string.IsNullOrWhiteSpace(setting) || setting == "none")
        {
            return [];
        }
        if (setting != "auto")
        {
            return [.. setting.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Path.GetFullPath)];
        }
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var samples = Path.Combine(dir.FullName, "samples");
                if (File.Exists(Path.Combine(dir.FullName, "Cluster.sln")) && Directory.Exists(samples))
                {
                    return [samples];
                }
            }
        }
        return [];
    }
}
