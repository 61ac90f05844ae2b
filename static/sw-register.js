// Every page registers the service worker (static/sw.js, served at /sw.js with scope /): it
// receives Web Push messages and makes the app installable. docs/architecture.md, "Web Push".
export const registration =
  "serviceWorker" in navigator
    ? navigator.serviceWorker
        .register("/sw.js", { scope: "/", type: "module" })
        .catch((error) => {
          console.warn("service worker not registered:", error);
          return null;
        })
    : Promise.resolve(null);
