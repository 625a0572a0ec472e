using MedServe;
using MedServe.Client;
using MedServe.Dashboard;
using Orleans.Dashboard;

// medserve-dashboard --cluster redis://host:port [--cluster-id ID] [--urls http://...]
//   or --gateway host:port[,host:port] for an embedded node or static gateways.
// The web app, the management API and the Orleans Dashboard, served beside the silos as an Orleans client.
args = MedServe.Dashboard.Security.SecurityHosting.ExpandFlags(args);
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.Configuration.AddCommandLine(args, new Dictionary<string, string>
{
    ["--cluster"] = "MedServe:Cluster",
    ["--cluster-id"] = "MedServe:ClusterId",
    ["--insecure-dev"] = "MedServe:InsecureDev",
    ["--gateway"] = "MedServe:Gateways",
});
var settings = builder.Configuration.GetSection("MedServe");
var options = new MedServeClientOptions
{
    Cluster = settings["Cluster"],
    ClusterId = settings["ClusterId"] is { Length: > 0 } id ? id : null,
    Gateways = settings["Gateways"] is { Length: > 0 } gateways ? gateways.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) : new MedServeClientOptions().Gateways,
};
try
{
    builder.UseOrleansClient(client =>
    {
        MedServeClient.UseCluster(client, options);
        client.AddDashboard();
    });
}
catch (MedServeException e)
{
    Console.Error.WriteLine($"medserve-dashboard: {e.Message}");
    return 2;
}
builder.Services.AddMedServeWebApp(builder.Configuration);
// The web app's files from the build output in every environment (not only Development or a publish folder).
builder.WebHost.UseStaticWebAssets();

var app = builder.Build();
app.MapGet("/healthz", () => Results.Ok(new { live = true })).AllowAnonymous();
app.MapMedServeWebApp();
app.Lifetime.ApplicationStarted.Register(() =>
{
    foreach (var url in app.Urls)
    {
        Console.WriteLine($"MedServe web app: {url}/ (cluster {options.Describe()})");
    }
});
await app.RunAsync();
return 0;
