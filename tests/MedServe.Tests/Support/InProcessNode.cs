using MedServe.Silo.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace MedServe.Tests.Support;

/// <summary>
/// A real embedded node started in the test process (Kestrel on a free loopback port, its own Orleans ports), ready
/// when returned: the one way tests start a node of their own (the shared one is <see cref="NodeFixture"/>).
/// </summary>
public static class InProcessNode
{
    /// <summary>Starts a node with state under <paramref name="data"/>, importing <paramref name="import"/>, with the test admin key.</summary>
    public static async Task<(WebApplication App, Uri Address)> StartAsync(string data, string import, int gatewayPort,
        IEnumerable<string>? extraArgs = null, Action<IServiceCollection>? services = null)
    {
        var app = MedServeNode.Build(
            ["--urls", "http://127.0.0.1:0", "--data", data, "--import", import,
             "--silo-port", NodeProcess.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture),
             "--gateway-port", gatewayPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
             "--admin-key", NodeFixture.AdminKey, "--Logging:LogLevel:Default", "Warning", .. extraArgs ?? []],
            services);
        await app.StartAsync();
        await app.Services.GetRequiredService<NodeReadiness>().WhenReady.WaitAsync(TimeSpan.FromMinutes(2));
        return (app, new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()));
    }
}
